/*
 * test_glob.c - the glob matcher of KEYS, SCAN MATCH and CONFIG GET (server/glob.c): literals,
 * '?', '*' (alone, repeated, leading, trailing), sets with ranges, negation, escapes and
 * unterminated sets, backslash escapes, binary subjects with NUL bytes, case folding, and a
 * pattern that takes exponential time in a naive recursive matcher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

static int failures;

static void expect(const char *pat, const char *s, bool nocase, bool want, int line)
{
    bool got = tl_glob_match(pat, strlen(pat), s, strlen(s), nocase);
    if (got != want) {
        fprintf(stderr,
                "test_glob.c:%d: tl_glob_match(\"%s\", \"%s\", nocase=%d) == %d, "
                "expected %d\n",
                line, pat, s, nocase, got, want);
        failures++;
    }
}

#define MATCH(p, s)       expect(p, s, false, true, __LINE__)
#define NO_MATCH(p, s)    expect(p, s, false, false, __LINE__)
#define MATCH_NC(p, s)    expect(p, s, true, true, __LINE__)
#define NO_MATCH_NC(p, s) expect(p, s, true, false, __LINE__)

static void test_glob_literals_and_question_mark(void)
{
    MATCH("", "");
    NO_MATCH("", "a");
    NO_MATCH("a", "");
    MATCH("hello", "hello");
    NO_MATCH("hello", "hell");
    NO_MATCH("hell", "hello");
    MATCH("h?llo", "hello");
    MATCH("h?llo", "hallo");
    NO_MATCH("h?llo", "hllo");
    MATCH("???", "abc");
    NO_MATCH("???", "ab");
}

static void test_glob_star(void)
{
    /* An empty subject matches only the empty pattern, as in Redis's matcher (redis-server
     * 7.0: SET "" v, then KEYS ** answers nothing; KEYS * takes every key without matching). */
    NO_MATCH("*", "");
    NO_MATCH("**", "");
    NO_MATCH("?*", "");
    MATCH("*", "anything");
    MATCH("**", "x");
    MATCH("h*llo", "hllo");
    MATCH("h*llo", "heeeello");
    NO_MATCH("h*llo", "heeeellx");
    MATCH("*llo", "hello");
    MATCH("he*", "hello");
    NO_MATCH("he*", "hxllo");
    MATCH("user:*:count", "user:42:count");
    NO_MATCH("user:*:count", "user:42:counts");
    MATCH("*a*b", "xxaxxbxxab");
    NO_MATCH("*a*b", "xxaxxbxxa");
    MATCH("a*b*c", "abc");
    MATCH("a*?", "ab");
    NO_MATCH("a*?", "a");
    MATCH("x:*", "x:1");
    NO_MATCH("x:*", "y:1");
    MATCH("x:1", "x:1");
}

static void test_glob_sets(void)
{
    MATCH("h[ae]llo", "hello");
    MATCH("h[ae]llo", "hallo");
    NO_MATCH("h[ae]llo", "hillo");
    MATCH("h[^e]llo", "hallo");
    NO_MATCH("h[^e]llo", "hello");
    MATCH("h[a-b]llo", "hbllo");
    NO_MATCH("h[a-b]llo", "hcllo");
    MATCH("h[b-a]llo", "hallo"); /* a reversed range is the same range */
    MATCH("[0-9][0-9]", "42");
    NO_MATCH("[0-9][0-9]", "4x");
    MATCH("[\\]]", "]"); /* an escaped ']' inside a set */
    MATCH("[\\-]", "-");
    /* As in Redis, a range may take the closing bracket as its end: "[a-]" is the range
     * ']'..'a' in a set that is never closed. */
    MATCH("[a-]", "^");
    NO_MATCH("[a-]", "-");
    MATCH("[-a]", "-");
    NO_MATCH("[]", "a"); /* an empty set matches nothing */
    NO_MATCH("[]a", "a");
    MATCH("[abc", "b"); /* an unterminated set runs to the end of the pattern */
    NO_MATCH("[abc", "d");
    NO_MATCH("[a]", "");
    MATCH("*[0-9]", "key9");
    NO_MATCH("*[0-9]", "key");
}

static void test_glob_escapes(void)
{
    MATCH("\\*", "*");
    NO_MATCH("\\*", "a");
    MATCH("\\?", "?");
    NO_MATCH("\\?", "x");
    MATCH("a\\[b", "a[b");
    MATCH("a\\", "a\\"); /* a trailing backslash is itself */
    NO_MATCH("a\\", "a");
}

static void test_glob_nocase(void)
{
    MATCH_NC("HELLO", "hello");
    MATCH_NC("h*O", "HeLLo");
    MATCH_NC("[A-Z]x", "qX");
    MATCH_NC("[^A]", "b");
    NO_MATCH_NC("[^A]", "a");
    NO_MATCH("HELLO", "hello");
    MATCH_NC("maxmemory*", "MAXMEMORY-policy");
}

static void test_glob_binary_subjects(void)
{
    const char subj[] = {'a', '\0', 'b'};
    if (!tl_glob_match("a?b", 3, subj, sizeof subj, false) ||
        !tl_glob_match("a*", 2, subj, sizeof subj, false) ||
        tl_glob_match("a", 1, subj, sizeof subj, false)) {
        fprintf(stderr, "test_glob.c:%d: a subject with a NUL byte matched wrongly\n", __LINE__);
        failures++;
    }
    const char pat[] = {'a', '\0', '*'};
    if (!tl_glob_match(pat, sizeof pat, subj, sizeof subj, false)) {
        fprintf(stderr, "test_glob.c:%d: a pattern with a NUL byte did not match\n", __LINE__);
        failures++;
    }
}

/* "*a*a*...*b" against "aaaa...a": a recursive matcher tries every split; this one is
 * quadratic, so the whole test runs in well under a second. */
static void test_glob_no_exponential_backtracking(void)
{
    enum { STARS = 30, SUBJECT_LEN = 4000 };
    char pat[2 * STARS + 2];
    size_t plen = 0;
    for (int k = 0; k < STARS; k++) {
        pat[plen++] = '*';
        pat[plen++] = 'a';
    }
    pat[plen++] = 'b';
    char *subj = malloc(SUBJECT_LEN);
    if (!subj)
        exit(1);
    memset(subj, 'a', SUBJECT_LEN);
    clock_t t0 = clock();
    bool m = tl_glob_match(pat, plen, subj, SUBJECT_LEN, false);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    free(subj);
    if (m || secs > 2.0) {
        fprintf(stderr, "test_glob.c:%d: pathological pattern: matched=%d in %.2f s\n", __LINE__, m,
                secs);
        failures++;
    }
}

int main(void)
{
    test_glob_literals_and_question_mark();
    test_glob_star();
    test_glob_sets();
    test_glob_escapes();
    test_glob_nocase();
    test_glob_binary_subjects();
    test_glob_no_exponential_backtracking();
    if (failures) {
        fprintf(stderr, "%d glob checks failed\n", failures);
        return 1;
    }
    return 0;
}
