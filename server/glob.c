/*
 * glob.c - glob-style pattern matching for KEYS, SCAN MATCH and CONFIG GET, with the pattern
 * language Redis documents for KEYS:
 *
 *   ?      any one byte
 *   *      any run of bytes, including none (but an empty subject matches only the empty
 *          pattern, as in Redis)
 *   [abc]  one byte of the set; [^abc] one byte not in it; [a-z] a range (either order);
 *          inside a set, \x stands for x itself; a set that is never closed runs to the end
 *          of the pattern; "[]" is an empty set and matches nothing
 *   \x     the byte x itself (a backslash at the very end of the pattern is a backslash)
 *
 * Patterns and subjects are byte strings with explicit lengths (keys may hold NUL bytes).
 *
 * The matcher is iterative and remembers only the most recent '*': when the rest of the
 * pattern fails, that star absorbs one more byte and the match resumes after it. Earlier stars
 * never need revisiting (whatever they could absorb, the later star can absorb too), so a
 * match costs at most O(pattern length x subject length), even for patterns such as
 * "*a*a*a*a*b" that make a recursive matcher exponential.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"

static inline unsigned char fold(unsigned char ch, bool nocase)
{
    return nocase ? (unsigned char)tolower(ch) : ch;
}

/* Matches the set starting just after its '[' at pat[p] against byte ch. Returns the index
 * just past the set's closing ']' (or plen when the set is never closed) and stores whether
 * ch is in the set. */
static size_t match_set(const char *pat, size_t plen, size_t p, unsigned char ch, bool nocase,
                        bool *matched)
{
    bool negate = false, hit = false;
    unsigned char c = fold(ch, nocase);
    if (p < plen && pat[p] == '^') {
        negate = true;
        p++;
    }
    while (p < plen && pat[p] != ']') {
        unsigned char lo, hi;
        if (pat[p] == '\\' && p + 1 < plen) {
            lo = hi = (unsigned char)pat[p + 1];
            p += 2;
        } else if (p + 2 < plen && pat[p + 1] == '-') {
            lo = (unsigned char)pat[p];
            hi = (unsigned char)pat[p + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            p += 3;
        } else {
            lo = hi = (unsigned char)pat[p];
            p++;
        }
        if (nocase) {
            lo = fold(lo, true);
            hi = fold(hi, true);
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
        }
        if (c >= lo && c <= hi)
            hit = true;
    }
    if (p < plen)
        p++; /* the closing ']' */
    *matched = negate ? !hit : hit;
    return p;
}

/* Matches the single-byte element at pat[p] ('?', a set, an escape or a literal) against ch.
 * Returns the index just past the element and stores whether it matched. */
static size_t match_one(const char *pat, size_t plen, size_t p, unsigned char ch, bool nocase,
                        bool *matched)
{
    switch (pat[p]) {
    case '?':
        *matched = true;
        return p + 1;
    case '[':
        return match_set(pat, plen, p + 1, ch, nocase, matched);
    case '\\':
        if (p + 1 < plen) {
            *matched = fold((unsigned char)pat[p + 1], nocase) == fold(ch, nocase);
            return p + 2;
        }
        break; /* a trailing backslash is a literal backslash */
    default:
        break;
    }
    *matched = fold((unsigned char)pat[p], nocase) == fold(ch, nocase);
    return p + 1;
}

bool tl_glob_match(const char *pat, size_t plen, const char *s, size_t slen, bool nocase)
{
    /* Redis's matcher compares nothing when the subject is empty: it matches the empty pattern
     * only, so KEYS ** or SCAN MATCH * * leave out the empty key (KEYS * and SCAN MATCH *
     * take every key without matching, there as here). */
    if (slen == 0)
        return plen == 0;
    size_t p = 0, i = 0;
    /* The most recent star: the pattern index after it and the subject index it resumes at. */
    bool have_star = false;
    size_t star_p = 0, star_i = 0;

    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            while (p < plen && pat[p] == '*')
                p++;
            if (p == plen)
                return true; /* a trailing star takes the rest */
            have_star = true;
            star_p = p;
            star_i = i;
            continue;
        }
        if (p < plen) {
            bool matched;
            size_t next = match_one(pat, plen, p, (unsigned char)s[i], nocase, &matched);
            if (matched) {
                p = next;
                i++;
                continue;
            }
        }
        if (!have_star)
            return false;
        /* Let the last star take one more byte and retry the rest of the pattern. */
        star_i++;
        p = star_p;
        i = star_i;
    }
    /* The subject is used up: only stars may remain. */
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}
