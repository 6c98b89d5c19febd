/*
 * fuzz_reader_equal.h - deep comparison of two tally_reply trees, and feeding a reader in
 * chosen pieces; shared by test_client_reader.c and the reader's fuzz target fuzz_reader.c.
 */
#ifndef TL_FUZZ_READER_EQUAL_H
#define TL_FUZZ_READER_EQUAL_H

#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include "tally.h"

/* Whether a and b are the same reply: type, values, text, elements and attributes. */
static inline bool reply_equal(const tally_reply *a, const tally_reply *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->integer != b->integer || a->len != b->len ||
        a->elements != b->elements || memcmp(a->vtype, b->vtype, sizeof a->vtype) != 0)
        return false;
    if (a->dval != b->dval && !(isnan(a->dval) && isnan(b->dval)))
        return false;
    if ((a->str == NULL) != (b->str == NULL) || (a->str && memcmp(a->str, b->str, a->len) != 0))
        return false;
    if (!reply_equal(a->attribute, b->attribute))
        return false;
    for (size_t i = 0; i < a->elements; i++)
        if (!reply_equal(a->element[i], b->element[i]))
            return false;
    return true;
}

/* A reader's limits (0: the default) and how to cut its input: piece(i, arg) bytes at step i. */
struct reader_plan {
    int max_depth;
    long long max_bulk_len, max_elements;
    size_t (*piece)(size_t i, void *arg);
    void *arg;
};

/*
 * Feeds p[0..n) to a new reader in the plan's pieces (at least 1 byte each), taking replies
 * as they complete, up to max replies into out. Returns how many were taken, and the
 * reader's final status (0 or its error) in *status; err receives its message.
 */
static inline size_t reader_run(const char *p, size_t n, const struct reader_plan *plan,
                                tally_reply **out, size_t max, int *status, char *err,
                                size_t errcap)
{
    tally_reader *r = tally_reader_new();
    tally_reader_set_limits(r, plan->max_depth, plan->max_bulk_len, plan->max_elements);
    size_t got = 0, fed = 0;
    int rc = 0;
    for (size_t i = 0; fed < n && rc == 0; i++) {
        size_t k = plan->piece(i, plan->arg);
        if (k == 0)
            k = 1;
        if (k > n - fed)
            k = n - fed;
        rc = tally_reader_feed(r, p + fed, k);
        fed += k;
        while (rc == 0) {
            tally_reply *rep = NULL;
            rc = tally_reader_get_reply(r, &rep);
            if (!rep)
                break;
            if (got < max)
                out[got++] = rep;
            else
                tally_reply_free(rep);
        }
    }
    *status = rc;
    snprintf(err, errcap, "%s", tally_reader_error(r));
    tally_reader_free(r);
    return got;
}

#endif
