/*
 * commands_throttle.c - CL.THROTTLE, redis-cell's rate limiter:
 *
 *   CL.THROTTLE key max_burst count_per_period period [quantity]
 *
 * allows count_per_period actions per period seconds, in bursts of up to max_burst + 1, and
 * applies quantity (default 1) actions now. The reply is redis-cell's array of five integers:
 * limited (0 or 1), limit (max_burst + 1), remaining, retry_after (seconds, -1 when allowed)
 * and reset_after (seconds). The algorithm (GCRA, in nanoseconds) is throttle.c's.
 *
 * The state is one typed engine value (tag TL_TAG_THROTTLE): the TAT in unix nanoseconds as
 * 8 bytes little endian, with an expiry at the TAT (rounded up to the millisecond). Once the
 * TAT has passed the limiter is full again, which is what a missing key means, so an idle
 * limiter disappears on its own. The step is one tl_db_update: atomic against every other
 * write of the key. A limited action, or quantity 0, writes nothing.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "throttle.h"

#define TAT_BYTES 8
#define NS_PER_MS INT64_C(1000000)

/* What one CL.THROTTLE passes to its update function. */
struct throttle_op {
    struct tl_throttle_limit limit;
    int64_t quantity;
    int64_t now_ns;
    struct tl_throttle_result res;
    uint8_t tat[TAT_BYTES]; /* the new state's bytes, valid until tl_db_update returns */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * TL_THROTTLE_NS_PER_S + ts.tv_nsec;
}

static int throttle_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct throttle_op *op = arg;
    int64_t tat = 0;
    if (found) {
        if (cur->type != TL_VAL_TYPED || cur->tag != TL_TAG_THROTTLE)
            return TL_EWRONGTYPE;
        if (cur->len != TAT_BYTES)
            return TL_ECORRUPT;
        uint64_t u = 0;
        for (int k = 0; k < TAT_BYTES; k++)
            u |= (uint64_t)(uint8_t)cur->bytes[k] << (8 * k);
        if (u > INT64_MAX)
            return TL_ECORRUPT;
        tat = (int64_t)u;
    }
    tl_throttle_step(&op->limit, op->quantity, found, tat, op->now_ns, &op->res);
    if (!op->res.store)
        return TL_UPDATE_KEEP;
    uint64_t u = (uint64_t)op->res.new_tat_ns;
    for (int k = 0; k < TAT_BYTES; k++)
        op->tat[k] = (uint8_t)(u >> (8 * k));
    next->type = TL_VAL_TYPED;
    next->tag = TL_TAG_THROTTLE;
    next->bytes = (char *)op->tat;
    next->len = TAT_BYTES;
    next->expire_ms = (op->res.new_tat_ns + NS_PER_MS - 1) / NS_PER_MS;
    return TL_UPDATE_PUT;
}

/* Parses argument i as an integer; replies an error naming it when it is not one. */
static bool throttle_arg(struct tl_client *c, struct tl_args *a, int i, const char *name,
                         int64_t *out)
{
    if (tl_parse_int(a->argv[i], a->len[i], out))
        return true;
    tl_reply_errorf(c, "ERR CL.THROTTLE %s is not an integer or out of range", name);
    return false;
}

static void cmd_throttle(struct tl_client *c, struct tl_args *a)
{
    if (a->argc > 6) {
        tl_reply_wrong_arity(c, "cl.throttle");
        return;
    }
    struct throttle_op op = {.quantity = 1};
    int64_t period_s;
    if (!throttle_arg(c, a, 2, "max_burst", &op.limit.max_burst) ||
        !throttle_arg(c, a, 3, "count_per_period", &op.limit.count_per_period) ||
        !throttle_arg(c, a, 4, "period", &period_s) ||
        (a->argc == 6 && !throttle_arg(c, a, 5, "quantity", &op.quantity)))
        return;
    if (period_s < 1 || period_s > TL_THROTTLE_MAX_PERIOD_S) {
        tl_reply_errorf(c, "ERR CL.THROTTLE period must be from 1 to %lld seconds (got %lld)",
                        (long long)TL_THROTTLE_MAX_PERIOD_S, (long long)period_s);
        return;
    }
    if (op.quantity < 0) {
        tl_reply_errorf(c, "ERR CL.THROTTLE quantity must be 0 or more (got %lld)",
                        (long long)op.quantity);
        return;
    }
    op.limit.period_ns = period_s * TL_THROTTLE_NS_PER_S;
    char err[256];
    if (tl_throttle_check_limit(&op.limit, err, sizeof err) < 0) {
        tl_reply_errorf(c, "ERR CL.THROTTLE %s", err);
        return;
    }
    op.now_ns = now_ns();
    int rc = tl_key_update(c, a->argv[1], a->len[1], throttle_update, &op);
    if (rc == TL_EWRONGTYPE) {
        tl_reply_error(c, TL_WRONGTYPE_ERR);
        return;
    }
    if (rc == TL_ECORRUPT) {
        tl_reply_errorf(c, "ERR CL.THROTTLE key '%.*s' holds a corrupt rate-limit state",
                        (int)(a->len[1] < 128 ? a->len[1] : 128), a->argv[1]);
        return;
    }
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    tl_reply_array(c, 5);
    tl_reply_int(c, op.res.limited ? 1 : 0);
    tl_reply_int(c, op.res.limit);
    tl_reply_int(c, op.res.remaining);
    tl_reply_int(c, op.res.limited ? tl_throttle_reply_seconds(op.res.retry_after_ns) : -1);
    tl_reply_int(c, tl_throttle_reply_seconds(op.res.reset_after_ns));
}

#define W TL_CMD_WRITE
#define F TL_CMD_FAST

const struct tl_command tl_commands_throttle[] = {
    {"cl.throttle", -5, W | F, 1, 1, 1, cmd_throttle, "ratelimit", "7.0.0",
     "Applies quantity actions to a GCRA rate limiter and tells whether they are allowed.", "O(1)",
     "key max_burst count_per_period period [quantity]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
