/*
 * fuzz_reader.c - libFuzzer target for libtally's reply reader (client/reader.c).
 *
 * The input's first bytes choose piece sizes; the rest is fed to two readers with small
 * limits: one in those pieces, one whole. Both must give the same replies (deep comparison,
 * attributes included) and end in the same state: the same protocol error and message, or
 * none. The sanitizers catch what the reader reads or leaks out of bounds. Each reply is also
 * walked for its invariants: a NUL after every string, element counts that match the type.
 *
 * Build: tests/test_fuzz_reader.sh builds it with clang -fsanitize=fuzzer,address,undefined from
 * this file and every .c file in client/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_reader_equal.h"
#include "tally.h"

/* Small limits so that the over-limit paths are reached by short inputs. */
#define FUZZ_MAX_DEPTH    6
#define FUZZ_MAX_BULK     64
#define FUZZ_MAX_ELEMENTS 16
/* The input's first bytes choose the piece sizes; this many at most. */
#define FUZZ_SPLIT_BYTES 4
/* Replies compared per input; the rest are freed unchecked. */
#define FUZZ_MAX_REPLIES 256

static void check(int cond)
{
    if (!cond)
        abort();
}

struct split {
    const uint8_t *sizes;
    size_t n;
};

static size_t split_piece(size_t i, void *arg)
{
    const struct split *s = arg;
    return s->n ? 1 + s->sizes[i % s->n] % 32 : 1;
}

static size_t whole_piece(size_t i, void *arg)
{
    (void)i;
    return *(size_t *)arg;
}

static void check_reply(const tally_reply *r, int depth)
{
    check(depth <= FUZZ_MAX_DEPTH + 1);
    if (r->str)
        check(r->str[r->len] == '\0');
    switch (r->type) {
    case TALLY_REPLY_MAP:
        check(r->elements % 2 == 0);
        /* fall through */
    case TALLY_REPLY_ARRAY:
    case TALLY_REPLY_SET:
    case TALLY_REPLY_PUSH:
        check(r->elements <= 2 * FUZZ_MAX_ELEMENTS);
        break;
    default:
        check(r->elements == 0 && r->element == NULL);
        break;
    }
    for (size_t i = 0; i < r->elements; i++)
        check_reply(r->element[i], depth + 1);
    if (r->attribute) { /* parsed at the depth of the value it precedes */
        check(r->attribute->type == TALLY_REPLY_MAP);
        check_reply(r->attribute, depth);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tally_reply *split_out[FUZZ_MAX_REPLIES], *whole_out[FUZZ_MAX_REPLIES];
    struct split sp = {data, size < FUZZ_SPLIT_BYTES ? size : FUZZ_SPLIT_BYTES};
    data += sp.n;
    size -= sp.n;
    size_t all = size ? size : 1;
    struct reader_plan split_plan = {FUZZ_MAX_DEPTH, FUZZ_MAX_BULK, FUZZ_MAX_ELEMENTS, split_piece,
                                     &sp};
    struct reader_plan whole_plan = {FUZZ_MAX_DEPTH, FUZZ_MAX_BULK, FUZZ_MAX_ELEMENTS, whole_piece,
                                     &all};
    int split_rc, whole_rc;
    char split_err[512], whole_err[512];
    size_t n1 = reader_run((const char *)data, size, &split_plan, split_out, FUZZ_MAX_REPLIES,
                           &split_rc, split_err, sizeof split_err);
    size_t n2 = reader_run((const char *)data, size, &whole_plan, whole_out, FUZZ_MAX_REPLIES,
                           &whole_rc, whole_err, sizeof whole_err);
    check(n1 == n2);
    check(split_rc == whole_rc);
    check(strcmp(split_err, whole_err) == 0);
    check((split_rc == 0) == (split_err[0] == '\0'));
    for (size_t i = 0; i < n1; i++) {
        check_reply(split_out[i], 0);
        check(reply_equal(split_out[i], whole_out[i]));
        tally_reply_free(split_out[i]);
        tally_reply_free(whole_out[i]);
    }
    return 0;
}
