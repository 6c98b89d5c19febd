/*
 * helpers.c - typed helpers for Tally's commands: each builds its arguments, sends one command
 * and turns the reply into C values, so the caller parses nothing.
 *
 * Replies accepted (RESP2 and RESP3 alike):
 *   INCRBY, PFADD, PFCOUNT, WINCRBY without GET  an integer
 *   GET                                          a string holding an integer, or nil
 *   WINCRBY ... GET, WGET                        an array of integers, one per window
 *   CL.THROTTLE                                  an array of 5 integers
 *   WQUANTILE                                    an array of doubles (RESP3) or strings like
 *                                                "12.5" (RESP2), nil for an empty window
 * An error reply is TALLY_ERR_REPLY with the server's text, then the command and key in
 * parentheses; any other reply is TALLY_ERR_TYPE naming what came and what was expected.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Room for a number's text: an int64 or a double in shortest round-trip form. */
#define HELPER_NUMBER_BYTES 32
/* Arguments a helper adds besides its lists (command, key, options). */
#define HELPER_FIXED_ARGS 8
/* Elements in one helper's lists (windows, quantiles, keys, elements): a bound on argv. */
#define HELPER_MAX_LIST (1 << 20)

/* One command's arguments; numbers are written into nums, one slot each. */
struct helper_args {
    int argc, cap;
    const char **argv;
    size_t *len;
    char (*nums)[HELPER_NUMBER_BYTES];
    int nnums;
};

/* What a helper is doing, for its messages: "WINCRBY key \"k\"". */
struct helper_call {
    tally_ctx *ctx;
    const char *cmd;
    char what[TLC_QUOTE_BYTES * 4 + 64];
};

static int call_begin(struct helper_call *c, tally_ctx *ctx, const char *cmd, const void *key,
                      size_t klen)
{
    char q[TLC_QUOTE_BYTES * 4 + 16];
    c->ctx = ctx;
    c->cmd = cmd;
    tlc_clear_error(ctx);
    if (key)
        snprintf(c->what, sizeof c->what, "%s key %s", cmd, tlc_quote(q, sizeof q, key, klen));
    else
        snprintf(c->what, sizeof c->what, "%s", cmd);
    if (!key && klen)
        return tlc_fail(ctx, TALLY_ERR_ARG, "%s: NULL key with %zu bytes", cmd, klen);
    return 0;
}

static int args_init(struct helper_call *c, struct helper_args *a, size_t list)
{
    memset(a, 0, sizeof *a);
    if (list > HELPER_MAX_LIST)
        return tlc_fail(c->ctx, TALLY_ERR_ARG, "%s: %zu list items, over the limit of %d", c->what,
                        list, HELPER_MAX_LIST);
    a->cap = (int)list + HELPER_FIXED_ARGS;
    a->argv = calloc((size_t)a->cap, sizeof *a->argv);
    a->len = calloc((size_t)a->cap, sizeof *a->len);
    a->nums = calloc((size_t)a->cap, sizeof *a->nums);
    if (!a->argv || !a->len || !a->nums)
        return tlc_fail(c->ctx, TALLY_ERR_NOMEM, "%s: out of memory", c->what);
    return 0;
}

static void args_free(struct helper_args *a)
{
    free(a->argv);
    free(a->len);
    free(a->nums);
}

static void arg_bytes(struct helper_args *a, const void *p, size_t n)
{
    a->argv[a->argc] = p ? p : "";
    a->len[a->argc++] = n;
}

static void arg_str(struct helper_args *a, const char *s)
{
    arg_bytes(a, s, strlen(s));
}

static void arg_int(struct helper_args *a, int64_t v)
{
    char *slot = a->nums[a->nnums++];
    arg_bytes(a, slot, (size_t)snprintf(slot, HELPER_NUMBER_BYTES, "%lld", (long long)v));
}

/* The shortest text that reads back as the same double. */
static void arg_double(struct helper_args *a, double v)
{
    char *slot = a->nums[a->nnums++];
    int w = snprintf(slot, HELPER_NUMBER_BYTES, "%.15g", v);
    if (strtod(slot, NULL) != v)
        w = snprintf(slot, HELPER_NUMBER_BYTES, "%.17g", v);
    arg_bytes(a, slot, (size_t)w);
}

/* Sends the command; on success the reply, which is not an error reply. */
static tally_reply *call_run(struct helper_call *c, struct helper_args *a)
{
    tally_reply *rep = tally_command_argv(c->ctx, a->argc, a->argv, a->len);
    if (rep && rep->type == TALLY_REPLY_ERROR) {
        tlc_fail(c->ctx, TALLY_ERR_REPLY, "%s (%s)", rep->str, c->what);
        tally_reply_free(rep);
        return NULL;
    }
    if (!rep && tally_errcode(c->ctx) == 0)
        tlc_fail(c->ctx, TALLY_ERR_NOMEM, "%s: out of memory", c->what);
    return rep;
}

static int call_type_error(struct helper_call *c, const tally_reply *rep, const char *expected)
{
    return tlc_fail(c->ctx, TALLY_ERR_TYPE, "%s: the reply is %s %s, expected %s", c->what,
                    rep->type == TALLY_REPLY_INTEGER || rep->type == TALLY_REPLY_ARRAY ? "an" : "a",
                    tally_reply_type_name(rep->type), expected);
}

/* The reply as one integer. */
static int reply_integer(struct helper_call *c, tally_reply *rep, int64_t *out)
{
    if (rep->type != TALLY_REPLY_INTEGER)
        return call_type_error(c, rep, "an integer");
    if (out)
        *out = rep->integer;
    return 0;
}

/* Checks that the reply is an array of n elements. */
static int reply_array(struct helper_call *c, const tally_reply *rep, size_t n,
                       const char *expected)
{
    if (rep->type != TALLY_REPLY_ARRAY)
        return call_type_error(c, rep, expected);
    if (rep->elements != n)
        return tlc_fail(c->ctx, TALLY_ERR_TYPE, "%s: the reply has %zu elements, expected %zu",
                        c->what, rep->elements, n);
    return 0;
}

/* The reply as an array of n integers. */
static int reply_integers(struct helper_call *c, tally_reply *rep, size_t n, int64_t *out)
{
    int rc = reply_array(c, rep, n, "an array of integers");
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type != TALLY_REPLY_INTEGER)
            return tlc_fail(c->ctx, TALLY_ERR_TYPE,
                            "%s: element %zu of the reply is a %s, "
                            "expected an integer",
                            c->what, i, tally_reply_type_name(rep->element[i]->type));
        if (out)
            out[i] = rep->element[i]->integer;
    }
    return 0;
}

/* Runs the command and hands the reply to check; frees it. */
static int call_finish(struct helper_call *c, struct helper_args *a, tally_reply **rep)
{
    *rep = call_run(c, a);
    args_free(a);
    return *rep ? 0 : tally_errcode(c->ctx);
}

static int check_list(struct helper_call *c, size_t n, const void *list, const char *name)
{
    if (n > 0 && !list)
        return tlc_fail(c->ctx, TALLY_ERR_ARG, "%s: %zu %s but the list is NULL", c->what, n, name);
    return 0;
}

/* Runs "cmd key num..." (the commands without lists): the reply, not an error reply. */
static int call_key_numbers(struct helper_call *c, tally_ctx *ctx, const char *cmd, const void *key,
                            size_t klen, const int64_t *nums, int nnums, tally_reply **rep)
{
    struct helper_args a;
    int rc = call_begin(c, ctx, cmd, key, klen);
    if (rc || (rc = args_init(c, &a, 0)))
        return rc;
    arg_str(&a, cmd);
    arg_bytes(&a, key, klen);
    for (int i = 0; i < nnums; i++)
        arg_int(&a, nums[i]);
    return call_finish(c, &a, rep);
}

int tally_incrby(tally_ctx *ctx, const void *key, size_t klen, int64_t delta, int64_t *result)
{
    struct helper_call c;
    tally_reply *rep;
    int rc = call_key_numbers(&c, ctx, "INCRBY", key, klen, &delta, 1, &rep);
    if (rc != 0)
        return rc;
    rc = reply_integer(&c, rep, result);
    tally_reply_free(rep);
    return rc;
}

/* A whole signed 64-bit decimal integer, as Redis writes one. */
static bool text_to_int64(const char *s, size_t n, int64_t *out)
{
    char text[HELPER_NUMBER_BYTES];
    if (n == 0 || n >= sizeof text || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
        return false;
    memcpy(text, s, n);
    text[n] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end != text + n)
        return false;
    *out = v;
    return true;
}

int tally_get_int(tally_ctx *ctx, const void *key, size_t klen, int64_t *value, bool *found)
{
    struct helper_call c;
    tally_reply *rep;
    int64_t v = 0;
    bool f = false;
    int rc = call_key_numbers(&c, ctx, "GET", key, klen, NULL, 0, &rep);
    if (rc != 0)
        return rc;
    if (rep->type == TALLY_REPLY_STRING) {
        if (text_to_int64(rep->str, rep->len, &v))
            f = true;
        else
            rc = tlc_fail(ctx, TALLY_ERR_TYPE, "%s: the value is not an integer", c.what);
    } else if (rep->type != TALLY_REPLY_NIL) {
        rc = call_type_error(&c, rep, "a string or nil");
    }
    tally_reply_free(rep);
    if (value)
        *value = rc == 0 ? v : 0;
    if (found)
        *found = rc == 0 && f;
    return rc;
}

static void arg_windows(struct helper_args *a, size_t n, const char *const *windows)
{
    for (size_t i = 0; i < n; i++)
        arg_str(a, windows[i]);
}

static int check_windows(struct helper_call *c, size_t n, const char *const *windows)
{
    int rc = check_list(c, n, windows, "windows");
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!windows[i] || !windows[i][0])
            rc = tlc_fail(c->ctx, TALLY_ERR_ARG, "%s: window %zu is %s", c->what, i,
                          windows[i] ? "empty" : "NULL");
    return rc;
}

int tally_wincrby(tally_ctx *ctx, const void *key, size_t klen, int64_t delta, int64_t at_ms,
                  const char *policy, size_t nwindows, const char *const *windows, int64_t *out)
{
    struct helper_call c;
    struct helper_args a;
    tally_reply *rep;
    int rc = call_begin(&c, ctx, "WINCRBY", key, klen);
    if (rc || (rc = check_windows(&c, nwindows, windows)) || (rc = args_init(&c, &a, nwindows)))
        return rc;
    arg_str(&a, "WINCRBY");
    arg_bytes(&a, key, klen);
    arg_int(&a, delta);
    if (at_ms != TALLY_NOW) {
        arg_str(&a, "AT");
        arg_int(&a, at_ms);
    }
    if (policy) {
        arg_str(&a, "POLICY");
        arg_str(&a, policy);
    }
    if (nwindows > 0) {
        arg_str(&a, "GET");
        arg_windows(&a, nwindows, windows);
    }
    if ((rc = call_finish(&c, &a, &rep)) != 0)
        return rc;
    rc = nwindows ? reply_integers(&c, rep, nwindows, out) : reply_integer(&c, rep, out);
    tally_reply_free(rep);
    return rc;
}

int tally_wget(tally_ctx *ctx, const void *key, size_t klen, size_t nwindows,
               const char *const *windows, int64_t at_ms, int64_t *sums)
{
    struct helper_call c;
    struct helper_args a;
    tally_reply *rep;
    int rc = call_begin(&c, ctx, "WGET", key, klen);
    if (rc == 0 && nwindows == 0)
        rc = tlc_fail(ctx, TALLY_ERR_ARG, "%s: no window given", c.what);
    if (rc || (rc = check_windows(&c, nwindows, windows)) || (rc = args_init(&c, &a, nwindows)))
        return rc;
    arg_str(&a, "WGET");
    arg_bytes(&a, key, klen);
    arg_windows(&a, nwindows, windows);
    if (at_ms != TALLY_NOW) {
        arg_str(&a, "AT");
        arg_int(&a, at_ms);
    }
    if ((rc = call_finish(&c, &a, &rep)) != 0)
        return rc;
    rc = reply_integers(&c, rep, nwindows, sums);
    tally_reply_free(rep);
    return rc;
}

int tally_throttle(tally_ctx *ctx, const void *key, size_t klen, int64_t max_burst, int64_t count,
                   int64_t period_s, int64_t quantity, struct tally_throttle_result *out)
{
    struct helper_call c;
    tally_reply *rep;
    int64_t v[5];
    const int64_t nums[] = {max_burst, count, period_s, quantity};
    int rc = call_key_numbers(&c, ctx, "CL.THROTTLE", key, klen, nums, 4, &rep);
    if (rc != 0)
        return rc;
    rc = reply_integers(&c, rep, 5, v);
    tally_reply_free(rep);
    if (rc == 0 && out)
        *out = (struct tally_throttle_result){
            .limited = v[0] != 0,
            .limit = v[1],
            .remaining = v[2],
            .retry_after_s = v[3],
            .reset_after_s = v[4],
        };
    return rc;
}

int tally_pfadd(tally_ctx *ctx, const void *key, size_t klen, size_t nelements,
                const void *const *elements, const size_t *lens, bool *changed)
{
    struct helper_call c;
    struct helper_args a;
    tally_reply *rep;
    int64_t v = 0;
    int rc = call_begin(&c, ctx, "PFADD", key, klen);
    if (rc || (rc = check_list(&c, nelements, elements, "elements")) ||
        (rc = args_init(&c, &a, nelements)))
        return rc;
    arg_str(&a, "PFADD");
    arg_bytes(&a, key, klen);
    for (size_t i = 0; i < nelements; i++)
        arg_bytes(&a, elements[i], lens ? lens[i] : strlen(elements[i]));
    if ((rc = call_finish(&c, &a, &rep)) != 0)
        return rc;
    rc = reply_integer(&c, rep, &v);
    tally_reply_free(rep);
    if (rc == 0 && changed)
        *changed = v != 0;
    return rc;
}

int tally_pfcount(tally_ctx *ctx, size_t nkeys, const void *const *keys, const size_t *klens,
                  int64_t *count)
{
    struct helper_call c;
    struct helper_args a;
    tally_reply *rep;
    size_t k0 = nkeys && keys ? (klens ? klens[0] : strlen(keys[0])) : 0;
    int rc = call_begin(&c, ctx, "PFCOUNT", nkeys && keys ? keys[0] : NULL, k0);
    if (rc == 0 && nkeys == 0)
        rc = tlc_fail(ctx, TALLY_ERR_ARG, "PFCOUNT: no key given");
    if (rc || (rc = check_list(&c, nkeys, keys, "keys")) || (rc = args_init(&c, &a, nkeys)))
        return rc;
    arg_str(&a, "PFCOUNT");
    for (size_t i = 0; i < nkeys; i++)
        arg_bytes(&a, keys[i], klens ? klens[i] : strlen(keys[i]));
    if ((rc = call_finish(&c, &a, &rep)) != 0)
        return rc;
    rc = reply_integer(&c, rep, count);
    tally_reply_free(rep);
    return rc;
}

/* One WQUANTILE element: a double, its text (RESP2) or an integer; nil for an empty window. */
static int quantile_value(struct helper_call *c, const tally_reply *e, size_t i, double *v,
                          bool *present)
{
    *present = true;
    if (e->type == TALLY_REPLY_DOUBLE) {
        *v = e->dval;
    } else if (e->type == TALLY_REPLY_INTEGER) {
        *v = (double)e->integer;
    } else if (e->type == TALLY_REPLY_NIL) {
        *v = NAN;
        *present = false;
    } else if (e->type == TALLY_REPLY_STRING || e->type == TALLY_REPLY_STATUS) {
        char *end;
        errno = 0;
        *v = strtod(e->str, &end);
        if (e->len == 0 || end != e->str + e->len)
            return tlc_fail(c->ctx, TALLY_ERR_TYPE,
                            "%s: element %zu of the reply is not a "
                            "number: \"%.40s\"",
                            c->what, i, e->str);
    } else {
        return tlc_fail(c->ctx, TALLY_ERR_TYPE,
                        "%s: element %zu of the reply is a %s, expected "
                        "a double or nil",
                        c->what, i, tally_reply_type_name(e->type));
    }
    return 0;
}

int tally_wquantile(tally_ctx *ctx, const void *key, size_t klen, const char *window, size_t nq,
                    const double *qs, double *values, bool *present)
{
    struct helper_call c;
    struct helper_args a;
    tally_reply *rep;
    int rc = call_begin(&c, ctx, "WQUANTILE", key, klen);
    if (rc == 0 && nq == 0)
        rc = tlc_fail(ctx, TALLY_ERR_ARG, "%s: no quantile given", c.what);
    if (rc == 0 && (!window || !window[0]))
        rc = tlc_fail(ctx, TALLY_ERR_ARG, "%s: no window given", c.what);
    if (rc || (rc = check_list(&c, nq, qs, "quantiles")) || (rc = args_init(&c, &a, nq)))
        return rc;
    arg_str(&a, "WQUANTILE");
    arg_bytes(&a, key, klen);
    arg_str(&a, window);
    for (size_t i = 0; i < nq; i++)
        arg_double(&a, qs[i]);
    if ((rc = call_finish(&c, &a, &rep)) != 0)
        return rc;
    rc = reply_array(&c, rep, nq, "an array of doubles");
    for (size_t i = 0; rc == 0 && i < nq; i++) {
        double v = NAN;
        bool p = false;
        rc = quantile_value(&c, rep->element[i], i, &v, &p);
        if (values)
            values[i] = v;
        if (present)
            present[i] = p;
    }
    tally_reply_free(rep);
    return rc;
}
