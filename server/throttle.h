/*
 * throttle.h - the generic cell rate algorithm (GCRA) behind CL.THROTTLE, as a pure function of
 * the stored state and the time (no I/O, no clock): commands_throttle.c calls it inside a
 * read-modify-write of the key, and tests drive it with time they choose.
 *
 * A limit allows count_per_period actions per period, in bursts of up to max_burst + 1. Its
 * emission interval T is period / count_per_period, in whole nanoseconds (rounded down: at
 * most 1 ns short, so 5,000 per second is exactly 0.2 ms), and its tolerance is
 * tau = T * (max_burst + 1). The state is one time, the TAT (theoretical arrival time): the
 * moment the limiter would be empty again. An action of quantity q at time now is allowed when
 *
 *     max(TAT, now) + q * T - tau <= now
 *
 * and then TAT becomes max(TAT, now) + q * T; a limited action changes nothing. With no TAT
 * stored (a new or expired key) TAT counts as now. The reply follows redis-cell:
 *   limit       max_burst + 1
 *   remaining   floor((tau - reset_after) / T), and 0 when that is negative
 *   retry_after when limited, the time until the same action would be allowed; -1 when allowed,
 *               or when q * T > tau (an action that can never be allowed)
 *   reset_after the time until the limiter is full again: TAT - now after the action
 * Quantity 0 only reads the state.
 *
 * All arithmetic is in int64 nanoseconds relative to now, within these bounds: tau at most
 * TL_THROTTLE_MAX_SPAN_NS, now at most TL_THROTTLE_MAX_TIME_NS, a stored TAT taken at most
 * 2 * TL_THROTTLE_MAX_SPAN_NS ahead of now.
 */
#ifndef TL_THROTTLE_H
#define TL_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_THROTTLE_NS_PER_S    INT64_C(1000000000)
#define TL_THROTTLE_MAX_SPAN_NS (INT64_C(1) << 61) /* about 73 years */
#define TL_THROTTLE_MAX_TIME_NS (INT64_C(1) << 62) /* unix time in 2116 */
/* The longest period CL.THROTTLE accepts, in seconds (about 73 years). */
#define TL_THROTTLE_MAX_PERIOD_S (TL_THROTTLE_MAX_SPAN_NS / TL_THROTTLE_NS_PER_S)

struct tl_throttle_limit {
    int64_t max_burst;        /* >= 0 */
    int64_t count_per_period; /* >= 1 */
    int64_t period_ns;        /* >= 1 */
};

struct tl_throttle_result {
    bool limited;
    int64_t limit; /* max_burst + 1 */
    int64_t remaining;
    int64_t retry_after_ns; /* -1 when allowed, or when the quantity can never be allowed */
    int64_t reset_after_ns;
    bool store;         /* the TAT changed: store new_tat_ns */
    int64_t new_tat_ns; /* unix time in ns */
};

/* Checks a limit against the bounds above. 0, or -EINVAL with a message naming the argument
 * (max_burst, count_per_period or period) in err. */
int tl_throttle_check_limit(const struct tl_throttle_limit *l, char *err, size_t errlen);

/* The emission interval T of a checked limit, in ns (>= 1). */
int64_t tl_throttle_interval_ns(const struct tl_throttle_limit *l);

/* One GCRA step for a checked limit: an action of quantity (>= 0) at now_ns (unix ns), with
 * the stored TAT tat_ns when have_tat. Fills *r. */
void tl_throttle_step(const struct tl_throttle_limit *l, int64_t quantity, bool have_tat,
                      int64_t tat_ns, int64_t now_ns, struct tl_throttle_result *r);

/* A duration as CL.THROTTLE replies it, in whole seconds as redis-cell rounds: up to the next
 * second when the fraction is 1 ms or more, down otherwise; -1 stays -1. */
int64_t tl_throttle_reply_seconds(int64_t ns);

#endif
