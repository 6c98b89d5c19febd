/*
 * window.c - windowed series over the engine's keys: policies, bucket keys, writes to every
 * resolution, and the plan that covers a sliding window with the finest buckets still held.
 * tallystore.h describes the model and the bucket key layout.
 *
 * The plan, for a window [L, T] (L = T - W) at clock time now. Resolution i (width w_i,
 * retention R_i) holds the buckets that start at or after lo_i = alignup(now - R_i, w_i).
 * Walking from the finest resolution:
 *   - if alignup(L, w_i) >= lo_i, resolution i holds the rest of the window: its buckets that
 *     start in [alignup(L, w_i), hi) are taken, and the plan ends (so does it at the coarsest);
 *   - else resolution i covers [b, hi) with b = alignup(lo_i, w_{i+1}), a boundary aligned to
 *     the next resolution, whose buckets then end exactly where these begin; hi = b.
 * hi starts at T + 1 (buckets that start at or before T). Every part of the window is counted
 * once; the only loss is the part of the oldest bucket that lies before L.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "db_impl.h"
#include "error.h"
#include "tallystore.h"

/* A resolution keeps at most this many buckets (retention / resolution): the cost of reading
 * a whole window is bounded. */
#define MAX_BUCKETS_PER_RES 100000

static const struct {
    const char *suffix;
    int64_t ms;
} UNITS[] = {
    {"w", 7 * 86400000LL}, {"d", 86400000LL}, {"h", 3600000LL},
    {"m", 60000LL},        {"s", 1000LL},     {"ms", 1LL},
};

bool tl_duration_parse(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (v > TL_WINDOW_MAX_TIME_MS)
            return false;
        v = v * 10 + (s[i] - '0');
        i++;
    }
    if (i == 0 || v <= 0)
        return false;
    int64_t unit = 1000; /* a bare number is seconds */
    if (i < len) {
        size_t slen = len - i;
        unit = 0;
        for (size_t u = 0; u < sizeof UNITS / sizeof UNITS[0]; u++) {
            if (strlen(UNITS[u].suffix) == slen && memcmp(UNITS[u].suffix, s + i, slen) == 0)
                unit = UNITS[u].ms;
        }
        if (!unit)
            return false;
    }
    if (v > TL_WINDOW_MAX_TIME_MS / unit)
        return false;
    *ms = v * unit;
    return true;
}

size_t tl_duration_format(int64_t ms, char *buf, size_t cap)
{
    for (size_t u = 0; u < sizeof UNITS / sizeof UNITS[0]; u++) {
        if (ms % UNITS[u].ms == 0) {
            int n = snprintf(buf, cap, "%" PRId64 "%s", ms / UNITS[u].ms, UNITS[u].suffix);
            return n < 0 ? 0 : (size_t)n;
        }
    }
    return 0; /* not reached: every ms is a multiple of 1 ms */
}

/* Writes "pair N ('text'): " and then the message into err; returns -EINVAL. */
static int policy_error(char *err, size_t errlen, int pair, const char *text, size_t tlen,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int policy_error(char *err, size_t errlen, int pair, const char *text, size_t tlen,
                        const char *fmt, ...)
{
    int n = snprintf(err, errlen, "pair %d ('%.*s'): ", pair, (int)(tlen > 64 ? 64 : tlen), text);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int tl_window_policy_parse(const char *spec, size_t len, struct tl_window_policy *p, char *err,
                           size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (len == 0) {
        snprintf(err, errlen,
                 "the policy is empty: give RESOLUTION:RETENTION pairs such as "
                 "1m:3h,1h:8d,1d:400d");
        return -EINVAL;
    }
    size_t pos = 0;
    while (pos <= len) {
        const char *part = spec + pos;
        const char *comma = memchr(part, ',', len - pos);
        size_t plen = comma ? (size_t)(comma - part) : len - pos;
        int pair = p->n + 1;
        if (p->n == TL_WINDOW_MAX_RES) {
            snprintf(err, errlen, "the policy has more than %d pairs", TL_WINDOW_MAX_RES);
            return -EINVAL;
        }
        const char *colon = memchr(part, ':', plen);
        if (!colon)
            return policy_error(err, errlen, pair, part, plen,
                                "expected RESOLUTION:RETENTION, such as 1m:3h");
        size_t rlen = (size_t)(colon - part), tlen = plen - rlen - 1;
        struct tl_window_res r;
        if (!tl_duration_parse(part, rlen, &r.width_ms))
            return policy_error(err, errlen, pair, part, plen,
                                "the resolution '%.*s' is not a duration (a positive number "
                                "with ms, s, m, h, d or w; a bare number is seconds)",
                                (int)rlen, part);
        if (!tl_duration_parse(colon + 1, tlen, &r.retention_ms))
            return policy_error(err, errlen, pair, part, plen,
                                "the retention '%.*s' is not a duration (a positive number "
                                "with ms, s, m, h, d or w; a bare number is seconds)",
                                (int)tlen, colon + 1);
        if (r.retention_ms < r.width_ms)
            return policy_error(err, errlen, pair, part, plen,
                                "the retention is shorter than the resolution");
        if (r.retention_ms / r.width_ms > MAX_BUCKETS_PER_RES)
            return policy_error(err, errlen, pair, part, plen,
                                "the retention holds %" PRId64 " buckets of the resolution; "
                                "the limit is %d",
                                r.retention_ms / r.width_ms, MAX_BUCKETS_PER_RES);
        if (p->n > 0) {
            const struct tl_window_res *prev = &p->res[p->n - 1];
            char pb[32];
            if (r.width_ms <= prev->width_ms || r.width_ms % prev->width_ms != 0) {
                tl_duration_format(prev->width_ms, pb, sizeof pb);
                return policy_error(err, errlen, pair, part, plen,
                                    "the resolution must be a larger multiple of the previous "
                                    "pair's %s",
                                    pb);
            }
            if (r.retention_ms <= prev->retention_ms) {
                tl_duration_format(prev->retention_ms, pb, sizeof pb);
                return policy_error(err, errlen, pair, part, plen,
                                    "the retention must be longer than the previous pair's %s", pb);
            }
        }
        p->res[p->n++] = r;
        if (!comma)
            break;
        pos += plen + 1;
    }
    return 0;
}

size_t tl_window_policy_format(const struct tl_window_policy *p, char *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < p->n; i++) {
        char w[32], r[32];
        tl_duration_format(p->res[i].width_ms, w, sizeof w);
        tl_duration_format(p->res[i].retention_ms, r, sizeof r);
        int k = snprintf(buf + n, cap > n ? cap - n : 0, "%s%s:%s", i ? "," : "", w, r);
        if (k < 0)
            return n;
        n += (size_t)k;
    }
    return n < cap ? n : (cap ? cap - 1 : 0);
}

static int64_t align_down(int64_t t, int64_t w)
{
    int64_t q = t / w;
    if (t % w < 0)
        q--;
    return q * w;
}

static int64_t align_up(int64_t t, int64_t w)
{
    return align_down(t + w - 1, w);
}

int tl_window_plan(const struct tl_window_policy *p, int64_t now_ms, int64_t end_ms,
                   int64_t window_ms, struct tl_window_span spans[TL_WINDOW_MAX_RES])
{
    /* Times past 2^53 ms (year 285,000) are cut there: no arithmetic below can overflow. */
    if (end_ms > TL_WINDOW_MAX_TIME_MS)
        end_ms = TL_WINDOW_MAX_TIME_MS;
    if (end_ms < -TL_WINDOW_MAX_TIME_MS)
        end_ms = -TL_WINDOW_MAX_TIME_MS;
    if (window_ms > TL_WINDOW_MAX_TIME_MS)
        window_ms = TL_WINDOW_MAX_TIME_MS;
    if (now_ms > TL_WINDOW_MAX_TIME_MS)
        now_ms = TL_WINDOW_MAX_TIME_MS;
    int64_t start = end_ms - window_ms, hi = end_ms + 1;
    int n = 0;
    for (int i = 0; i < p->n; i++) {
        int64_t w = p->res[i].width_ms;
        if (n > 0 && hi % w != 0) {
            /* A finer resolution was passed over: this one's buckets must end where the finer
             * spans begin, so the handoff moves up to a boundary of this width (the finer
             * buckets from there on are held, since they were from hi on). */
            hi = align_up(hi, w);
            while (n > 0 && spans[n - 1].from_ms < hi) {
                spans[n - 1].from_ms = hi;
                if (spans[n - 1].from_ms < spans[n - 1].to_ms)
                    break;
                n--;
            }
        }
        int64_t lo = align_up(now_ms - p->res[i].retention_ms, w);
        int64_t first = align_up(start, w);
        if (i == p->n - 1 || first >= lo) {
            int64_t from = first > lo ? first : lo;
            if (from < hi)
                spans[n++] = (struct tl_window_span){i, from, hi};
            break;
        }
        int64_t b = align_up(lo, p->res[i + 1].width_ms);
        if (b < hi) {
            spans[n++] = (struct tl_window_span){i, b, hi};
            hi = b;
        }
    }
    return n;
}

/* The bucket key of (prefix, res, start) in buf; returns its length. */
static size_t bucket_key(const void *prefix, size_t plen, int res, int64_t start, uint8_t *buf)
{
    memcpy(buf, prefix, plen);
    buf[plen] = (uint8_t)res;
    tl_put_u64_be(buf + plen + 1, (uint64_t)start);
    return plen + TL_WINDOW_SUFFIX_BYTES;
}

/* A bucket key being built: on the stack for the usual short prefixes, no allocation per call. */
#define KEY_INLINE_BYTES 64
struct key_buf {
    uint8_t inline_buf[KEY_INLINE_BYTES];
    uint8_t *p;
};

static int key_buf_init(struct key_buf *k, size_t plen)
{
    if (plen + TL_WINDOW_SUFFIX_BYTES <= sizeof k->inline_buf) {
        k->p = k->inline_buf;
        return 0;
    }
    k->p = malloc(plen + TL_WINDOW_SUFFIX_BYTES);
    return k->p ? 0 : tl_error(-ENOMEM, "out of memory for a bucket key");
}

static void key_buf_free(struct key_buf *k)
{
    if (k->p != k->inline_buf)
        free(k->p);
}

/* Checks a write's time against the policy; sets up the bucket key buffer. */
static int write_check(size_t plen, const struct tl_window_policy *p, int64_t at_ms, int64_t now)
{
    char lim[32];
    if (p->n < 1)
        return tl_error(-EINVAL, "the series has an empty policy");
    if (at_ms < 0 || at_ms > TL_WINDOW_MAX_TIME_MS)
        return tl_error(-ERANGE, "timestamp %" PRId64 " ms is outside 0..%" PRId64, at_ms,
                        TL_WINDOW_MAX_TIME_MS);
    int64_t longest = p->res[p->n - 1].retention_ms;
    if (at_ms < now - longest) {
        tl_duration_format(longest, lim, sizeof lim);
        return tl_error(-ERANGE,
                        "timestamp %" PRId64 " ms is older than the policy's longest retention "
                        "(%s before now)",
                        at_ms, lim);
    }
    if (plen + TL_WINDOW_SUFFIX_BYTES > TL_MAX_KEY_BYTES)
        return tl_error(TL_ETOOBIG, "series key of %zu bytes is over the limit of %d bytes", plen,
                        TL_MAX_KEY_BYTES - TL_WINDOW_SUFFIX_BYTES);
    return 0;
}

/* Checks a write's time against the policy (write_check); sets up the bucket key buffer. */
static int write_setup(tl_db *db, size_t plen, const struct tl_window_policy *p, int64_t at_ms,
                       int64_t *now, struct key_buf *key)
{
    *now = tl_db_now_ms(db);
    int rc = write_check(plen, p, at_ms, *now);
    return rc < 0 ? rc : key_buf_init(key, plen);
}

/* Whether resolution i still holds a bucket starting at start: its expiry is not past. */
static bool bucket_held(const struct tl_window_res *r, int64_t start, int64_t now)
{
    return start >= now - r->retention_ms;
}

/* Calls write(arg, i, key, klen, expiry) for the bucket holding at_ms of every resolution i that
 * still holds that time, finest first, until one fails. */
typedef int (*bucket_write_fn)(void *arg, tl_db *db, int res, const uint8_t *key, size_t klen,
                               int64_t expire_ms);

static int write_buckets(tl_db *db, const void *prefix, size_t plen,
                         const struct tl_window_policy *p, int64_t at_ms, bucket_write_fn write,
                         void *arg)
{
    int64_t now = 0;
    struct key_buf key;
    int rc = write_setup(db, plen, p, at_ms, &now, &key);
    if (rc < 0)
        return rc;
    for (int i = 0; i < p->n && rc >= 0; i++) {
        const struct tl_window_res *r = &p->res[i];
        int64_t start = align_down(at_ms, r->width_ms);
        if (bucket_held(r, start, now))
            rc = write(arg, db, i, key.p, bucket_key(prefix, plen, i, start, key.p),
                       start + r->retention_ms);
    }
    key_buf_free(&key);
    return rc;
}

/* ---- counter series: the head's live buckets ------------------------------------------------ */

void tl_window_live_init(struct tl_window_live *l)
{
    for (int i = 0; i < TL_WINDOW_MAX_RES; i++) {
        l->start[i] = l->prev_start[i] = -1;
        l->value[i] = l->prev_value[i] = 0;
    }
    l->legacy = false;
}

/* A bucket start as a varint: 0 for none, else 1 + start / width (starts are aligned). */
static size_t put_start(uint8_t *out, int64_t start, int64_t width)
{
    return tl_put_varint(out, start < 0 ? 0 : (uint64_t)(start / width) + 1);
}

static bool get_start(const uint8_t **in, const uint8_t *end, int64_t width, int64_t *start)
{
    uint64_t v = 0;
    size_t n = tl_get_varint(*in, end, &v);
    if (n == 0 || v > (uint64_t)(TL_WINDOW_MAX_TIME_MS / width) + 1)
        return false;
    *in += n;
    *start = v == 0 ? -1 : (int64_t)(v - 1) * width;
    return true;
}

static bool get_value(const uint8_t **in, const uint8_t *end, int64_t *value)
{
    uint64_t v = 0;
    size_t n = tl_get_varint(*in, end, &v);
    *in += n;
    *value = tl_unzigzag(v);
    return n != 0;
}

size_t tl_window_live_encode(const struct tl_window_live *l, const struct tl_window_policy *p,
                             uint8_t *out)
{
    size_t n = 0;
    for (int i = 0; i < p->n; i++) {
        int64_t w = p->res[i].width_ms;
        n += put_start(out + n, l->start[i], w);
        if (l->start[i] < 0)
            continue;
        n += tl_put_varint(out + n, tl_zigzag(l->value[i]));
        uint64_t older =
            l->prev_start[i] < 0 ? 0 : (uint64_t)((l->start[i] - l->prev_start[i]) / w);
        n += tl_put_varint(out + n, older);
        if (older)
            n += tl_put_varint(out + n, tl_zigzag(l->prev_value[i]));
    }
    return n;
}

/* Reads resolution i's state in format V2. */
static bool get_live_v2(const uint8_t **at, const uint8_t *end, int64_t w, int i,
                        struct tl_window_live *l)
{
    uint64_t older = 0;
    if (!get_start(at, end, w, &l->start[i]))
        return false;
    if (l->start[i] < 0)
        return true;
    if (!get_value(at, end, &l->value[i]))
        return false;
    size_t n = tl_get_varint(*at, end, &older);
    if (n == 0 || older > (uint64_t)(l->start[i] / w))
        return false;
    *at += n;
    if (older == 0)
        return true;
    l->prev_start[i] = l->start[i] - (int64_t)older * w;
    return get_value(at, end, &l->prev_value[i]);
}

size_t tl_window_live_decode(const uint8_t *in, const uint8_t *end,
                             const struct tl_window_policy *p, enum tl_window_live_format f,
                             struct tl_window_live *l)
{
    const uint8_t *at = in;
    tl_window_live_init(l);
    for (int i = 0; i < p->n; i++) {
        int64_t w = p->res[i].width_ms;
        if (f == TL_WINDOW_LIVE_V2) {
            if (!get_live_v2(&at, end, w, i, l))
                return 0;
            continue;
        }
        if (!get_start(&at, end, w, &l->start[i]) || !get_value(&at, end, &l->value[i]) ||
            !get_start(&at, end, w, &l->prev_start[i]) || !get_value(&at, end, &l->prev_value[i]))
            return 0;
        if (l->prev_start[i] >= 0 && l->prev_start[i] >= l->start[i])
            return 0;
    }
    return (size_t)(at - in);
}

/* The late key of a bucket (its bucket key and TL_WINDOW_LATE_BYTE); returns its length. */
static size_t late_key(const void *prefix, size_t plen, int res, int64_t start, uint8_t *buf)
{
    size_t n = bucket_key(prefix, plen, res, start, buf);
    buf[n] = TL_WINDOW_LATE_BYTE;
    return n + 1;
}

/* Where at_ms lands in resolution i of a series: 0 not held, 1 the newest bucket or a newer one
 * (the head takes it), -1 an older bucket (late). */
static int live_place(const struct tl_window_series *s, int i, int64_t at_ms, int64_t now,
                      int64_t *start)
{
    const struct tl_window_res *r = &s->p.res[i];
    *start = align_down(at_ms, r->width_ms);
    if (!bucket_held(r, *start, now))
        return 0;
    if (s->live.legacy || *start < s->live.start[i])
        return -1;
    return 1;
}

/* Stores, as PUTs under their bucket keys, the previous buckets that a write at at_ms would
 * push out of the head's state. */
static int live_store_prev(tl_db *db, const struct tl_window_series *s, int64_t at_ms, int64_t now,
                           uint8_t *key, uint64_t *seq)
{
    for (int i = 0; i < s->p.n; i++) {
        const struct tl_window_live *l = &s->live;
        int64_t start, ps = l->prev_start[i];
        if (live_place(s, i, at_ms, now, &start) != 1 || start == l->start[i] || ps < 0)
            continue;
        int64_t expire = ps + s->p.res[i].retention_ms;
        if (tl_expired(expire, now))
            continue; /* gone already: nothing to keep */
        int rc = tl_db_put_int(db, key, bucket_key(s->prefix, s->plen, i, ps, key),
                               l->prev_value[i], expire, seq);
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct live_op {
    const struct tl_window_head *h;
    const struct tl_window_series *stored; /* the state whose previous buckets were stored */
    const uint8_t *stored_prefix;          /* a copy of its prefix */
    int64_t at_ms, delta, now;
    struct tl_window_series *s; /* the head's state (the decode's), after the write */
    unsigned late;              /* resolutions the write reaches as late writes */
    bool retry;
};

static int live_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct live_op *op = arg;
    int rc = op->h->decode(op->h->arg, cur, found, &op->s);
    if (rc < 0)
        return rc;
    struct tl_window_series *s = op->s;
    if ((rc = write_check(s->plen + 1, &s->p, op->at_ms, op->now)) < 0)
        return rc;
    struct tl_window_live *l = &s->live;
    int place[TL_WINDOW_MAX_RES];
    int64_t start[TL_WINDOW_MAX_RES];
    op->late = 0;
    /* The checks first, leaving the state as it was decoded: a retry stores its previous
     * buckets from it (tl_window_incr). */
    for (int i = 0; i < s->p.n; i++) {
        place[i] = live_place(s, i, op->at_ms, op->now, &start[i]);
        if (place[i] < 0)
            op->late |= 1u << i;
        if (place[i] <= 0)
            continue;
        if (start[i] == l->start[i]) {
            if ((op->delta > 0 && l->value[i] > INT64_MAX - op->delta) ||
                (op->delta < 0 && l->value[i] < INT64_MIN - op->delta))
                return tl_error(TL_EOVERFLOW, "increment or decrement would overflow");
            continue;
        }
        /* A newer bucket: the previous one leaves the head, and must have been stored. */
        if (l->prev_start[i] >= 0 && (!op->stored || op->stored->plen != s->plen ||
                                      memcmp(op->stored_prefix, s->prefix, s->plen) != 0 ||
                                      op->stored->live.prev_start[i] != l->prev_start[i])) {
            op->retry = true;
            return TL_UPDATE_KEEP;
        }
    }
    for (int i = 0; i < s->p.n; i++) {
        if (place[i] <= 0)
            continue;
        if (start[i] == l->start[i]) {
            l->value[i] += op->delta;
            continue;
        }
        l->prev_start[i] = l->start[i];
        l->prev_value[i] = l->value[i];
        l->start[i] = start[i];
        l->value[i] = op->delta;
    }
    if ((rc = op->h->encode(op->h->arg, s, op->at_ms, next)) < 0)
        return rc;
    return TL_UPDATE_PUT;
}

/* The head's value of a bucket (newest or previous), or else its bucket key's. */
static int bucket_value(tl_db *db, const struct tl_window_series *s, int i, int64_t start,
                        uint8_t *key, int64_t *v)
{
    if (start == s->live.start[i] && !s->live.legacy) {
        *v = s->live.value[i];
        return 0;
    }
    if (start == s->live.prev_start[i] && !s->live.legacy) {
        *v = s->live.prev_value[i];
        return 0;
    }
    struct tl_val val;
    int rc = tl_db_get(db, key, bucket_key(s->prefix, s->plen, i, start, key), &val);
    *v = rc == 1 && val.type == TL_VAL_INT ? val.i : 0;
    tl_val_clear(&val);
    return rc < 0 ? rc : 0;
}

/* The late part of a write: merges into the late key of every resolution in op->late, once
 * every such bucket's total (its value and its late key's) is known to stay within int64. */
static int live_late(tl_db *db, struct live_op *op, uint8_t *key, int64_t *finest, bool first,
                     uint64_t *seq)
{
    const struct tl_window_series *s = op->s;
    int64_t total[TL_WINDOW_MAX_RES];
    for (int i = 0; i < s->p.n; i++) {
        if (!(op->late & (1u << i)))
            continue;
        int64_t start = align_down(op->at_ms, s->p.res[i].width_ms), base;
        struct tl_val late;
        int rc = bucket_value(db, s, i, start, key, &base);
        if (rc == 0)
            rc = tl_db_get(db, key, late_key(s->prefix, s->plen, i, start, key), &late);
        if (rc < 0)
            return rc;
        int64_t l = rc == 1 && late.type == TL_VAL_INT ? late.i : 0;
        tl_val_clear(&late);
        if (__builtin_add_overflow(base, l, &total[i]) ||
            __builtin_add_overflow(total[i], op->delta, &total[i]))
            return tl_error(TL_EOVERFLOW, "increment or decrement would overflow");
    }
    for (int i = 0; i < s->p.n; i++) {
        if (!(op->late & (1u << i)))
            continue;
        int64_t start = align_down(op->at_ms, s->p.res[i].width_ms);
        size_t klen = late_key(s->prefix, s->plen, i, start, key);
        int rc =
            tl_db_merge_expire(db, key, klen, op->delta, start + s->p.res[i].retention_ms, seq);
        if (rc < 0)
            return rc;
        if (first && finest)
            *finest = total[i]; /* the finest bucket written: its total is the reply */
        first = false;
    }
    return 0;
}

int tl_window_incr(tl_db *db, const struct tl_window_head *h, int64_t at_ms, int64_t delta,
                   int64_t *finest, uint64_t *seq)
{
    /* Field by field, and the series is the decode's own (op.s points at it): neither it nor
     * cmd_wincrby's head_op is zeroed, and the head's state is changed where it is. Not zeroing
     * and updating in place took WINCRBY from 989k to 1,095k/s (-P 32, 100k series in memory,
     * five alternating pairs, each faster); the series was then still copied out of the decode
     * and back into the encode, some 680 bytes a write. */
    struct live_op op;
    op.h = h;
    op.s = NULL;
    op.stored = NULL;
    op.stored_prefix = NULL;
    op.at_ms = at_ms;
    op.delta = delta;
    op.now = tl_db_now_ms(db);
    op.late = 0;
    struct tl_window_series stored;
    struct key_buf key = {.p = NULL}, prefix = {.p = NULL};
    int rc;
    /* Usually one update of the head. When the write pushes a previous bucket out of it, the
     * update changes nothing and tells; the bucket is stored and the update made again. */
    for (int attempt = 0;; attempt++) {
        op.retry = false;
        if ((rc = tl_db_update(db, h->key, h->klen, live_update, &op, seq)) < 0)
            break;
        key_buf_free(&key);
        if ((rc = key_buf_init(&key, op.s->plen + 1)) < 0)
            break;
        if (!op.retry)
            break;
        if (attempt == 1000) {
            rc = tl_error(-EAGAIN, "the series' head kept changing under concurrent writes");
            break;
        }
        stored = *op.s;
        key_buf_free(&prefix);
        if ((rc = key_buf_init(&prefix, stored.plen)) < 0)
            break;
        memcpy(prefix.p, stored.prefix, stored.plen);
        stored.prefix = prefix.p;
        op.stored = &stored;
        op.stored_prefix = prefix.p;
        if ((rc = live_store_prev(db, &stored, at_ms, op.now, key.p, seq)) < 0)
            break;
    }
    if (rc == 0) {
        /* The finest resolution written: the head's newest bucket, unless it was late. */
        bool head_took = false;
        for (int i = 0; i < op.s->p.n && !head_took; i++) {
            int64_t start;
            int place = live_place(op.s, i, at_ms, op.now, &start);
            if (place == 0)
                continue;
            if (place < 0)
                break;
            head_took = true;
            if (finest)
                *finest = op.s->live.value[i];
        }
        rc = live_late(db, &op, key.p, finest, !head_took, seq);
    }
    if (key.p)
        key_buf_free(&key);
    if (prefix.p)
        key_buf_free(&prefix);
    return rc;
}

struct bucket_update {
    tl_update_fn fn;
    void *arg;
    int *res_index;
    uint64_t *seq;
    int64_t expire_ms;
};

static int bucket_update_fn(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct bucket_update *u = arg;
    int action = u->fn(u->arg, cur, found, next);
    if (action == TL_UPDATE_PUT)
        next->expire_ms = u->expire_ms;
    return action;
}

static int update_bucket(void *arg, tl_db *db, int res, const uint8_t *key, size_t klen,
                         int64_t expire_ms)
{
    struct bucket_update *u = arg;
    u->expire_ms = expire_ms;
    *u->res_index = res;
    return tl_db_update(db, key, klen, bucket_update_fn, u, u->seq);
}

int tl_window_update(tl_db *db, const void *prefix, size_t plen, const struct tl_window_policy *p,
                     int64_t at_ms, tl_update_fn fn, void *arg, int *res_index, uint64_t *seq)
{
    struct bucket_update u = {fn, arg, res_index, seq, 0};
    return write_buckets(db, prefix, plen, p, at_ms, update_bucket, &u);
}

/* The buckets of one resolution being visited, each passed on once with its whole value. */
struct span_visit {
    int res;
    tl_window_visit_fn fn;
    void *arg;
    int64_t start, sum; /* the bucket being added up */
    bool have;
    int64_t head_start[2], head_value[2]; /* the head's buckets of res in the span, oldest first */
    int n_head, next_head;
};

static int span_emit(struct span_visit *v)
{
    if (!v->have)
        return 0;
    v->have = false;
    struct tl_val val = {.type = TL_VAL_INT, .i = v->sum};
    return v->fn(v->arg, v->res, v->start, &val);
}

/* Adds x to the bucket at start (buckets arrive in order of start). */
static int span_add(struct span_visit *v, int64_t start, int64_t x)
{
    if (v->have && v->start != start) {
        int rc = span_emit(v);
        if (rc < 0)
            return rc;
    }
    if (!v->have) {
        v->have = true;
        v->start = start;
        v->sum = 0;
    }
    if (__builtin_add_overflow(v->sum, x, &v->sum))
        return tl_error(TL_EOVERFLOW, "the bucket starting at %" PRId64 " ms would leave 64 bits",
                        start);
    return 0;
}

/* Adds the head's buckets that start at or before start. */
static int span_add_head(struct span_visit *v, int64_t start)
{
    int rc = 0;
    while (rc == 0 && v->next_head < v->n_head && v->head_start[v->next_head] <= start) {
        rc = span_add(v, v->head_start[v->next_head], v->head_value[v->next_head]);
        v->next_head++;
    }
    return rc;
}

/* Whether the bucket key at start is the head's (which holds the value, and is taken instead). */
static bool head_bucket(const struct tl_window_live *l, int res, int64_t start)
{
    return l && !l->legacy && (start == l->start[res] || start == l->prev_start[res]);
}

/* Visits the buckets of one resolution with starts in [from, to) through an open iterator. */
static int visit_span(tl_iter *it, const void *prefix, size_t plen,
                      const struct tl_window_live *live, int res, int64_t from, int64_t to,
                      uint8_t *key, tl_window_visit_fn fn, void *arg)
{
    if (from >= to)
        return 0;
    struct span_visit v = {.res = res, .fn = fn, .arg = arg};
    if (live && !live->legacy) {
        const int64_t st[2] = {live->prev_start[res], live->start[res]};
        const int64_t val[2] = {live->prev_value[res], live->value[res]};
        for (int j = 0; j < 2; j++) {
            if (st[j] >= 0 && st[j] >= from && st[j] < to) {
                v.head_start[v.n_head] = st[j];
                v.head_value[v.n_head++] = val[j];
            }
        }
    }
    size_t klen = bucket_key(prefix, plen, res, from < 0 ? 0 : from, key);
    int rc = tl_iter_seek(it, key, klen);
    while (rc >= 0 && tl_iter_valid(it)) {
        size_t len;
        const uint8_t *k = tl_iter_key(it, &len);
        bool late = len == klen + 1 && k[klen] == TL_WINDOW_LATE_BYTE;
        if ((len != klen && !late) || memcmp(k, prefix, plen) != 0 || k[plen] != (uint8_t)res)
            break;
        int64_t start = (int64_t)tl_get_u64_be(k + plen + 1);
        if (start >= to)
            break;
        struct tl_val val;
        if ((rc = tl_iter_value(it, &val)) < 0)
            break;
        if (!live) {
            rc = fn(arg, res, start, &val); /* a typed bucket: as it is */
        } else if (val.type != TL_VAL_INT) {
            rc = tl_error(TL_ENOTINT, "the bucket starting at %" PRId64 " ms is not a counter",
                          start);
        } else if ((rc = span_add_head(&v, start)) == 0 &&
                   (late || !head_bucket(live, res, start))) {
            rc = span_add(&v, start, val.i);
        }
        tl_val_clear(&val);
        if (rc < 0)
            break;
        rc = tl_iter_next(it);
    }
    if (rc >= 0)
        rc = span_add_head(&v, INT64_MAX);
    if (rc >= 0)
        rc = span_emit(&v);
    return rc < 0 ? rc : 0;
}

/* Opens an iterator and a key buffer for visits of a series. */
static int visit_setup(tl_db *db, size_t plen, tl_iter **it, struct key_buf *key)
{
    int rc = key_buf_init(key, plen);
    if (rc < 0)
        return rc;
    if ((rc = tl_iter_new(db, it)) < 0)
        key_buf_free(key);
    return rc;
}

int tl_window_visit(tl_db *db, const void *prefix, size_t plen, const struct tl_window_policy *p,
                    const struct tl_window_live *live, int64_t end_ms, int64_t window_ms,
                    tl_window_visit_fn fn, void *arg)
{
    struct tl_window_span spans[TL_WINDOW_MAX_RES];
    int n = tl_window_plan(p, tl_db_now_ms(db), end_ms, window_ms, spans);
    if (n == 0)
        return 0;
    tl_iter *it;
    struct key_buf key;
    int rc = visit_setup(db, plen, &it, &key);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n && rc >= 0; i++)
        rc = visit_span(it, prefix, plen, live, spans[i].res, spans[i].from_ms, spans[i].to_ms,
                        key.p, fn, arg);
    tl_iter_free(it);
    key_buf_free(&key);
    return rc;
}

int tl_window_range(tl_db *db, const void *prefix, size_t plen, const struct tl_window_live *live,
                    int res, int64_t from_ms, int64_t to_ms, tl_window_visit_fn fn, void *arg)
{
    tl_iter *it;
    struct key_buf key;
    int rc = visit_setup(db, plen, &it, &key);
    if (rc < 0)
        return rc;
    rc = visit_span(it, prefix, plen, live, res, from_ms, to_ms, key.p, fn, arg);
    tl_iter_free(it);
    key_buf_free(&key);
    return rc;
}

static int sum_bucket(void *arg, int res, int64_t start, const struct tl_val *v)
{
    (void)res;
    int64_t *sum = arg;
    if (v->type != TL_VAL_INT)
        return tl_error(TL_ENOTINT, "the bucket starting at %" PRId64 " ms is not a counter",
                        start);
    if ((v->i > 0 && *sum > INT64_MAX - v->i) || (v->i < 0 && *sum < INT64_MIN - v->i))
        return tl_error(TL_EOVERFLOW, "the window's sum would overflow 64 bits");
    *sum += v->i;
    return 0;
}

int tl_window_sum(tl_db *db, const struct tl_window_series *s, int64_t end_ms, int64_t window_ms,
                  int64_t *sum)
{
    *sum = 0;
    return tl_window_visit(db, s->prefix, s->plen, &s->p, &s->live, end_ms, window_ms, sum_bucket,
                           sum);
}
