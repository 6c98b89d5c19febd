/*
 * test_client_reader.c - libtally's reply reader on its own, without a server.
 *
 * Checks:
 * - RESP2 and RESP3 samples (every type, nested aggregates, attributes, binary strings) read
 *   whole give exactly the expected trees;
 * - the same bytes fed byte by byte and in 200 seeded random splits give the same replies;
 * - malformed inputs and inputs over the limits (depth, bulk length, elements, line length)
 *   give TALLY_ERR_PROTOCOL with a message naming what was wrong, whole or byte by byte, and
 *   the error stays;
 * - the command encoder: %s %b %lld %%, empty arguments, unknown conversions refused.
 * Seed: TALLY_SEED (printed).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_reader_equal.h"
#include "tally.h"

#define MAX_REPLIES   64
#define RANDOM_SPLITS 200

static int failures;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t piece_whole(size_t i, void *arg)
{
    (void)i;
    return *(size_t *)arg;
}

static size_t piece_one(size_t i, void *arg)
{
    (void)i;
    (void)arg;
    return 1;
}

static size_t piece_random(size_t i, void *arg)
{
    (void)i;
    size_t max = *(size_t *)arg;
    return 1 + rng() % max;
}

/* Reads p whole with the given limits. */
static size_t read_whole(const char *p, size_t n, tally_reply **out, int *rc, char *err,
                         size_t errcap)
{
    size_t all = n ? n : 1;
    struct reader_plan plan = {0, 0, 0, piece_whole, &all};
    return reader_run(p, n, &plan, out, MAX_REPLIES, rc, err, errcap);
}

static void free_all(tally_reply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tally_reply_free(r[i]);
}

/* Any number of replies, for read_every_way. */
#define ANY_COUNT SIZE_MAX

/* Reads the sample whole, byte by byte and in random splits; all must agree, and give want
 * replies (unless ANY_COUNT). Returns the whole reading's replies (the caller frees them). */
static size_t read_every_way(const char *name, const char *p, size_t n, tally_reply **whole,
                             size_t want)
{
    int rc_whole, rc;
    char err_whole[512], err[512];
    size_t got = read_whole(p, n, whole, &rc_whole, err_whole, sizeof err_whole);
    for (int round = 0; round <= RANDOM_SPLITS; round++) {
        tally_reply *out[MAX_REPLIES];
        size_t maxpiece = 1 + rng() % 16;
        struct reader_plan plan = {0, 0, 0, round == 0 ? piece_one : piece_random, &maxpiece};
        size_t k = reader_run(p, n, &plan, out, MAX_REPLIES, &rc, err, sizeof err);
        bool same = k == got && rc == rc_whole && strcmp(err, err_whole) == 0;
        for (size_t i = 0; same && i < k; i++)
            same = reply_equal(out[i], whole[i]);
        if (!same) {
            fprintf(stderr, "%s: %s gives %zu replies (status %d: %s), whole %zu (%d: %s)\n", name,
                    round == 0 ? "byte by byte" : "a random split", k, rc, err, got, rc_whole,
                    err_whole);
            failures++;
            round = RANDOM_SPLITS;
        }
        free_all(out, k);
    }
    if (want != ANY_COUNT && got != want) {
        fprintf(stderr, "%s: %zu replies, expected %zu (%s)\n", name, got, want, err_whole);
        failures++;
    }
    return got;
}

static bool is_str(const tally_reply *r, enum tally_reply_type t, const char *s, size_t n)
{
    return r && r->type == t && r->len == n && memcmp(r->str, s, n) == 0 && r->str[n] == 0;
}

static bool is_int(const tally_reply *r, long long v)
{
    return r && r->type == TALLY_REPLY_INTEGER && r->integer == v;
}

static void test_resp2_samples(void)
{
    static const char s[] = "+OK\r\n"
                            "-ERR unknown command 'FOO'\r\n"
                            ":-9223372036854775808\r\n"
                            "$5\r\nhel\0o\r\n"
                            "$0\r\n\r\n"
                            "$-1\r\n"
                            "*-1\r\n"
                            "*0\r\n"
                            "*3\r\n:1\r\n*2\r\n$1\r\na\r\n*1\r\n+deep\r\n$3\r\nx\r\n\r\n";
    tally_reply *r[MAX_REPLIES];
    size_t n = read_every_way("RESP2 samples", s, sizeof s - 1, r, 9);
    if (n != 9)
        goto out;
    EXPECT(is_str(r[0], TALLY_REPLY_STATUS, "OK", 2));
    EXPECT(is_str(r[1], TALLY_REPLY_ERROR, "ERR unknown command 'FOO'", 25));
    EXPECT(is_int(r[2], INT64_MIN));
    EXPECT(is_str(r[3], TALLY_REPLY_STRING, "hel\0o", 5));
    EXPECT(is_str(r[4], TALLY_REPLY_STRING, "", 0));
    EXPECT(r[5]->type == TALLY_REPLY_NIL && r[6]->type == TALLY_REPLY_NIL);
    EXPECT(r[7]->type == TALLY_REPLY_ARRAY && r[7]->elements == 0);
    tally_reply *a = r[8];
    EXPECT(a->type == TALLY_REPLY_ARRAY && a->elements == 3);
    if (a->elements == 3) {
        EXPECT(is_int(a->element[0], 1));
        EXPECT(a->element[1]->type == TALLY_REPLY_ARRAY && a->element[1]->elements == 2);
        EXPECT(is_str(a->element[1]->element[0], TALLY_REPLY_STRING, "a", 1));
        EXPECT(is_str(a->element[1]->element[1]->element[0], TALLY_REPLY_STATUS, "deep", 4));
        EXPECT(is_str(a->element[2], TALLY_REPLY_STRING, "x\r\n", 3));
    }
out:
    free_all(r, n);
}

static void test_resp3_samples(void)
{
    static const char s[] = "%2\r\n+server\r\n$5\r\ntally\r\n+proto\r\n:3\r\n"
                            ",3.25\r\n,inf\r\n,-inf\r\n,nan\r\n,1e3\r\n"
                            "_\r\n#t\r\n#f\r\n"
                            "(-12345678901234567890123\r\n"
                            "=15\r\ntxt:Some string\r\n"
                            "!21\r\nSYNTAX invalid syntax\r\n"
                            "~2\r\n:1\r\n:2\r\n"
                            ">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n"
                            "|1\r\n+ttl\r\n:3600\r\n*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n%0\r\n"
                            "*2\r\n%1\r\n+k\r\n~1\r\n_\r\n,-0.5\r\n";
    tally_reply *r[MAX_REPLIES];
    size_t n = read_every_way("RESP3 samples", s, sizeof s - 1, r, 16);
    if (n != 16)
        goto out;
    EXPECT(r[0]->type == TALLY_REPLY_MAP && r[0]->elements == 4);
    EXPECT(is_str(r[0]->element[0], TALLY_REPLY_STATUS, "server", 6));
    EXPECT(is_str(r[0]->element[1], TALLY_REPLY_STRING, "tally", 5));
    EXPECT(is_int(r[0]->element[3], 3));
    EXPECT(r[1]->type == TALLY_REPLY_DOUBLE && r[1]->dval == 3.25 &&
           is_str(r[1], TALLY_REPLY_DOUBLE, "3.25", 4));
    EXPECT(r[2]->dval == INFINITY && r[3]->dval == -INFINITY && isnan(r[4]->dval));
    EXPECT(r[5]->dval == 1000.0);
    EXPECT(r[6]->type == TALLY_REPLY_NIL);
    EXPECT(r[7]->type == TALLY_REPLY_BOOL && r[7]->integer == 1);
    EXPECT(r[8]->type == TALLY_REPLY_BOOL && r[8]->integer == 0);
    EXPECT(is_str(r[9], TALLY_REPLY_BIGNUM, "-12345678901234567890123", 24));
    EXPECT(is_str(r[10], TALLY_REPLY_VERBATIM, "Some string", 11) &&
           strcmp(r[10]->vtype, "txt") == 0);
    EXPECT(is_str(r[11], TALLY_REPLY_ERROR, "SYNTAX invalid syntax", 21));
    EXPECT(r[12]->type == TALLY_REPLY_SET && r[12]->elements == 2 && is_int(r[12]->element[1], 2));
    EXPECT(r[13]->type == TALLY_REPLY_PUSH && r[13]->elements == 2);
    /* The attribute goes with the array after it; the inner one with the element after it. */
    tally_reply *a = r[14];
    EXPECT(a->type == TALLY_REPLY_ARRAY && a->elements == 2 && a->attribute);
    if (a->attribute && a->elements == 2) {
        EXPECT(a->attribute->type == TALLY_REPLY_MAP && a->attribute->elements == 2);
        EXPECT(is_str(a->attribute->element[0], TALLY_REPLY_STATUS, "ttl", 3));
        EXPECT(is_int(a->attribute->element[1], 3600));
        EXPECT(is_int(a->element[0], 1) && a->element[0]->attribute &&
               is_str(a->element[0]->attribute->element[1], TALLY_REPLY_STATUS, "b", 1));
        EXPECT(a->element[1]->type == TALLY_REPLY_MAP && a->element[1]->elements == 0);
    }
    EXPECT(r[15]->type == TALLY_REPLY_ARRAY && r[15]->elements == 2 && !r[15]->attribute);
    if (r[15]->elements == 2) {
        tally_reply *m = r[15]->element[0];
        EXPECT(m->type == TALLY_REPLY_MAP && m->elements == 2);
        EXPECT(m->element[1]->type == TALLY_REPLY_SET &&
               m->element[1]->element[0]->type == TALLY_REPLY_NIL);
        EXPECT(r[15]->element[1]->type == TALLY_REPLY_DOUBLE && r[15]->element[1]->dval == -0.5);
    }
out:
    free_all(r, n);
}

/* A large reply: 5,000 elements in a nested array, read in random splits. */
static void test_large_array(void)
{
    size_t cap = 200000, len = 0;
    char *p = malloc(cap);
    len += (size_t)sprintf(p + len, "*2\r\n*5000\r\n");
    for (int i = 0; i < 5000; i++) {
        char text[16];
        int w = sprintf(text, "%d", i);
        if (i % 2)
            len += (size_t)sprintf(p + len, ":%d\r\n", i % 7 + 1);
        else
            len += (size_t)sprintf(p + len, "$%d\r\n%s\r\n", w, text);
    }
    len += (size_t)sprintf(p + len, "+end\r\n");
    tally_reply *r[MAX_REPLIES];
    size_t n = read_every_way("5,000 elements", p, len, r, 1);
    EXPECT(n == 1 && r[0]->elements == 2 && r[0]->element[0]->elements == 5000);
    if (n == 1 && r[0]->element[0]->elements == 5000) {
        EXPECT(is_int(r[0]->element[0]->element[4999], 4999 % 7 + 1));
        EXPECT(is_str(r[0]->element[0]->element[4998], TALLY_REPLY_STRING, "4998", 4));
    }
    free_all(r, n);
    free(p);
}

struct bad_case {
    const char *name, *input;
    const char *message; /* a part of the expected message */
    size_t replies;      /* good replies before the bad one */
};

static void test_malformed(void)
{
    static const struct bad_case cases[] = {
        {"unknown type", "+OK\r\n?what\r\n", "unknown reply type byte 0x3f at byte 5", 1},
        {"bare LF", "+OK\n", "does not end with CRLF", 0},
        {"bad integer", ":12a\r\n", "invalid integer '12a'", 0},
        {"integer overflow", ":9223372036854775808\r\n", "invalid integer", 0},
        {"empty integer", ":\r\n", "invalid integer", 0},
        {"negative bulk", "$-2\r\n", "invalid bulk length '-2'", 0},
        {"bulk without CRLF", "$3\r\nabcd\r\n", "not followed by CRLF", 0},
        {"bad aggregate length", "*x\r\n", "invalid aggregate length 'x'", 0},
        {"null map", "%-1\r\n", "invalid aggregate length '-1'", 0},
        {"bad boolean", "#x\r\n", "boolean", 0},
        {"bad double", ",1.5x\r\n", "invalid double '1.5x'", 0},
        {"bad big number", "(12a\r\n", "invalid big number", 0},
        {"verbatim without format", "=3\r\nabc\r\n", "verbatim", 0},
        {"null with text", "_x\r\n", "null", 0},
        {"streamed string", "$?\r\n;3\r\nabc\r\n;0\r\n", "streamed bulk", 0},
        {"streamed aggregate", "*?\r\n:1\r\n.\r\n", "streamed aggregate", 0},
        {"empty line", "\r\n", "empty line", 0},
        {"error inside an array", "*2\r\n:1\r\n:x\r\n", "invalid integer 'x' at byte 8", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *c = &cases[i];
        tally_reply *r[MAX_REPLIES];
        size_t n = read_every_way(c->name, c->input, strlen(c->input), r, c->replies);
        int rc;
        char err[512];
        free_all(r, n);
        n = read_whole(c->input, strlen(c->input), r, &rc, err, sizeof err);
        free_all(r, n);
        if (rc != TALLY_ERR_PROTOCOL || n != c->replies || !strstr(err, c->message) ||
            strncmp(err, "protocol error: ", 16) != 0) {
            fprintf(stderr, "%s: status %d, %zu replies, message '%s'; expected %d, %zu, '%s'\n",
                    c->name, rc, n, err, TALLY_ERR_PROTOCOL, c->replies, c->message);
            failures++;
        }
    }
}

static void expect_limit(const char *name, const char *input, int depth, long long bulk,
                         long long elements, const char *message)
{
    size_t all = strlen(input);
    tally_reply *r[MAX_REPLIES];
    int rc;
    char err[512];
    for (int way = 0; way < 2; way++) {
        struct reader_plan plan = {depth, bulk, elements, way ? piece_one : piece_whole, &all};
        size_t n = reader_run(input, strlen(input), &plan, r, MAX_REPLIES, &rc, err, sizeof err);
        free_all(r, n);
        if (rc != TALLY_ERR_PROTOCOL || n != 0 || !strstr(err, message)) {
            fprintf(stderr, "limit %s (%s): status %d, %zu replies, '%s'; expected '%s'\n", name,
                    way ? "byte by byte" : "whole", rc, n, err, message);
            failures++;
        }
    }
}

static void test_limits(void)
{
    expect_limit("depth", "*1\r\n*1\r\n*1\r\n:1\r\n", 2, 0, 0, "nested deeper than the limit of 2");
    expect_limit("default depth",
                 "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                 "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                 "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
                 0, 0, 0, "nested deeper than the limit of 32");
    expect_limit("bulk", "$11\r\nhello world\r\n", 0, 10, 0,
                 "a string of 11 bytes, over the limit of 10 bytes");
    expect_limit("elements", "*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n", 0, 0, 4,
                 "an aggregate of 5 elements, over the limit of 4");
    expect_limit("line", "+0123456789012345678901234567890123456789012345678901234567\r\n", 0, 10,
                 0, "a line longer than the limit of 10 bytes");
    /* A huge announced array allocates nothing up front: it just waits for its elements. */
    tally_reader *r = tally_reader_new();
    tally_reply *rep = NULL;
    EXPECT(tally_reader_feed(r, "*4000000000\r\n:1\r\n", 17) == 0);
    EXPECT(tally_reader_get_reply(r, &rep) == 0 && rep == NULL);
    /* A protocol error stays. */
    EXPECT(tally_reader_feed(r, "?\r\n", 3) == 0);
    EXPECT(tally_reader_get_reply(r, &rep) == TALLY_ERR_PROTOCOL && rep == NULL);
    EXPECT(tally_reader_get_reply(r, &rep) == TALLY_ERR_PROTOCOL);
    EXPECT(tally_reader_feed(r, "+OK\r\n", 5) == TALLY_ERR_PROTOCOL);
    tally_reader_free(r);
}

static void expect_format(const char *expected, size_t elen, int rc, char *out, size_t len)
{
    if (rc != 0 || len != elen || memcmp(out, expected, elen) != 0) {
        fprintf(stderr, "format: status %d, %zu bytes '%.*s'; expected '%s'\n", rc, len, (int)len,
                out ? out : "", expected);
        failures++;
    }
    free(out);
}

static void test_format(void)
{
    char *out;
    size_t len;
    char err[256];
    static const char e1[] = "*4\r\n$3\r\nSET\r\n$7\r\nkey:a\0b\r\n$5\r\n-1234\r\n$4\r\n50%!\r\n";
    int rc = tally_format_command(&out, &len, err, sizeof err, "SET  key:%b %lld %lld%%!", "a\0b",
                                  (size_t)3, -1234LL, 50LL);
    expect_format(e1, sizeof e1 - 1, rc, out, len);
    static const char e2[] = "*3\r\n$4\r\nECHO\r\n$0\r\n\r\n$0\r\n\r\n";
    rc = tally_format_command(&out, &len, err, sizeof err, "ECHO %s %b", "", "", (size_t)0);
    expect_format(e2, sizeof e2 - 1, rc, out, len);
    const char *argv[] = {"PFADD", "k", "a b"};
    const size_t lens[] = {5, 1, 3};
    static const char e3[] = "*3\r\n$5\r\nPFADD\r\n$1\r\nk\r\n$3\r\na b\r\n";
    rc = tally_format_command_argv(&out, &len, 3, argv, lens);
    expect_format(e3, sizeof e3 - 1, rc, out, len);
    rc = tally_format_command(&out, &len, err, sizeof err, "GET %d", 5);
    EXPECT(rc == TALLY_ERR_ARG && out == NULL && strstr(err, "unsupported conversion at byte 4"));
    rc = tally_format_command(&out, &len, err, sizeof err, "   ");
    EXPECT(rc == TALLY_ERR_ARG && strstr(err, "no command"));
    rc = tally_format_command(&out, &len, err, sizeof err, "GET %");
    EXPECT(rc == TALLY_ERR_ARG);
}

int main(void)
{
    const char *seed = getenv("TALLY_SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : 0x7a11e5eedull;
    printf("seed %#" PRIx64 " (TALLY_SEED replays it)\n", rng_state);
    test_resp2_samples();
    test_resp3_samples();
    test_large_array();
    test_malformed();
    test_limits();
    test_format();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("all reader checks passed\n");
    return 0;
}
