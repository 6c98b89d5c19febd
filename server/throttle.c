/*
 * throttle.c - GCRA, the rate-limit algorithm of CL.THROTTLE (see throttle.h for the
 * definition and the reply's fields). Everything is computed relative to now: backlog is
 * TAT - now (0 when TAT has passed), so the sums stay far inside int64 for every limit that
 * tl_throttle_check_limit accepts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "throttle.h"

#define NS_PER_MS INT64_C(1000000)

int tl_throttle_check_limit(const struct tl_throttle_limit *l, char *err, size_t errlen)
{
    if (l->max_burst < 0) {
        snprintf(err, errlen, "max_burst must be 0 or more (got %" PRId64 ")", l->max_burst);
        return -EINVAL;
    }
    if (l->count_per_period < 1) {
        snprintf(err, errlen, "count_per_period must be 1 or more (got %" PRId64 ")",
                 l->count_per_period);
        return -EINVAL;
    }
    if (l->period_ns < 1 || l->period_ns > TL_THROTTLE_MAX_SPAN_NS) {
        snprintf(err, errlen, "period must be from 1 to %" PRId64 " ns (got %" PRId64 ")",
                 TL_THROTTLE_MAX_SPAN_NS, l->period_ns);
        return -EINVAL;
    }
    int64_t t = l->period_ns / l->count_per_period;
    if (t < 1) {
        snprintf(err, errlen,
                 "count_per_period %" PRId64 " in %" PRId64
                 " ns is more than one per nanosecond, the finest rate",
                 l->count_per_period, l->period_ns);
        return -EINVAL;
    }
    if (l->max_burst >= TL_THROTTLE_MAX_SPAN_NS / t) {
        snprintf(err, errlen,
                 "max_burst %" PRId64 " at one per %" PRId64
                 " ns makes a burst longer than %" PRId64 " seconds, the limit",
                 l->max_burst, t, TL_THROTTLE_MAX_PERIOD_S);
        return -EINVAL;
    }
    return 0;
}

int64_t tl_throttle_interval_ns(const struct tl_throttle_limit *l)
{
    return l->period_ns / l->count_per_period;
}

void tl_throttle_step(const struct tl_throttle_limit *l, int64_t quantity, bool have_tat,
                      int64_t tat_ns, int64_t now_ns, struct tl_throttle_result *r)
{
    int64_t t = tl_throttle_interval_ns(l);
    int64_t limit = l->max_burst + 1;
    int64_t tau = t * limit; /* <= TL_THROTTLE_MAX_SPAN_NS, checked */
    if (now_ns < 0)
        now_ns = 0;
    if (now_ns > TL_THROTTLE_MAX_TIME_NS)
        now_ns = TL_THROTTLE_MAX_TIME_NS;
    int64_t backlog = 0;
    if (have_tat && tat_ns > now_ns) {
        backlog = tat_ns - now_ns;
        if (backlog > 2 * TL_THROTTLE_MAX_SPAN_NS) /* only a clock far behind a stored TAT */
            backlog = 2 * TL_THROTTLE_MAX_SPAN_NS;
    }

    r->limit = limit;
    r->limited = true;
    r->retry_after_ns = -1;
    r->reset_after_ns = backlog;
    r->store = false;
    r->new_tat_ns = now_ns + backlog;
    if (quantity <= limit) {
        /* quantity * t <= tau: no overflow, and backlog + increment < 2^63. */
        int64_t after = backlog + quantity * t;
        if (after > tau) {
            r->retry_after_ns = after - tau;
        } else {
            r->limited = false;
            r->reset_after_ns = after;
            r->store = quantity > 0;
            r->new_tat_ns = now_ns + after;
        }
    }
    /* A quantity over the limit needs more than tau: never allowed, retry_after stays -1. */
    int64_t room = tau - r->reset_after_ns;
    r->remaining = room > 0 ? room / t : 0;
}

int64_t tl_throttle_reply_seconds(int64_t ns)
{
    if (ns < 0)
        return -1;
    int64_t s = ns / TL_THROTTLE_NS_PER_S;
    return ns % TL_THROTTLE_NS_PER_S >= NS_PER_MS ? s + 1 : s;
}
