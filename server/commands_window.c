/*
 * commands_window.c - Tally's windowed series: WINCRBY, WGET, WRANGE (counters), WOBSERVE,
 * WSTATS, WQUANTILE (quantile sketches), WPFADD, WPFCOUNT (distinct counts), and WPOLICY.
 *
 * A series has two parts:
 * - its head, the user's key: a typed value (TL_TAG_WINDOW, _WSKETCH or _WHLL, so TYPE, DEL,
 *   EXISTS, EXPIRE and SCAN see one key of that type), holding
 *       byte     version: 3 for counters (WINCRBY), 1 for the others
 *       8 bytes  generation, little endian: drawn when the series is created (new_generation:
 *                unique within a thread's seed, random across seeds)
 *       varint   auto expiry (unix ms) last set by a write, see below
 *       byte     n, the number of resolutions; in version 3, 0 stands for the built-in
 *                default policy (DEFAULT_SPEC), whose resolutions then do not follow
 *       n times  varint resolution ms, varint retention ms
 *       version 3: the newest and previous bucket of each resolution (tl_window_live_encode)
 *   so the series keeps the policy it was created with whatever later happens to the name, and
 *   a WINCRBY is one update of the head (storage/window.c, tl_window_incr). Older counter heads
 *   still work: version 2 (the policy always spelled out, the previous bucket's start in full,
 *   tl_window_live_decode's TL_WINDOW_LIVE_V1) is rewritten as version 3 by its next write, and
 *   version 1 (written before heads kept buckets) has all its writes merged in place;
 * - its buckets, engine keys TL_INTERNAL_PREFIX 0x01 generation(8, big endian) followed by the
 *   bucket suffix of storage/window.c, outside every database. The generation ties buckets to
 *   one life of the key: after DEL (or expiry) and a new write, the new series does not see the
 *   old buckets, which age out with their retention.
 *
 * Lifetime: a write keeps the head's expiry at least the policy's longest retention past the
 * written time (renewed once per coarsest bucket), so a series that is no longer written
 * disappears, head and buckets, once nothing in it is kept. An expiry set by the user (EXPIRE,
 * PERSIST) differs from the automatic one recorded in the head, and is then left alone.
 *
 * Policies: "default" (1m:3h,1h:8d,1d:400d), those of the config file (window-policy NAME
 * SPEC), and those of WPOLICY SET, which are stored in the engine (TL_INTERNAL_PREFIX 0x00
 * name -> spec) and, at start, override the config file's of the same name.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "coding.h" /* the engine's varints: plain inline functions, no engine state */
#include "server.h"
#include "sketch.h"

#define HEAD_VERSION      1 /* no buckets in the head */
#define HEAD_VERSION_LIVE 2 /* buckets in the head, read only */
#define HEAD_VERSION_CUR  3 /* buckets in the head, compact */
#define HEAD_MAX_BYTES    (1 + 8 + 10 + 1 + TL_WINDOW_MAX_RES * 20 + TL_WINDOW_LIVE_MAX_BYTES)
#define PREFIX_BYTES      11 /* TL_INTERNAL_PREFIX, kind, generation */
#define KIND_POLICY       0x00
#define KIND_BUCKETS      0x01
#define POLICIES_MAX      1024
#define DEFAULT_POLICY    "default"
#define DEFAULT_SPEC      "1m:3h,1h:8d,1d:400d"
#define SPEC_TEXT_BYTES   256
#define WINDOW_ARG_ERR    "ERR invalid window '%.*s': give a duration such as 90s, 15m, 1h or 7d"
#define AT_ARG_ERR        "ERR AT needs a unix time in milliseconds (0 to 2^53)"
#define MAX_WINDOWS       TL_WINDOW_MAX_RES * 8 /* GET windows in one request */

/* ---- policies ---------------------------------------------------------------------------- */

struct policy {
    char name[TL_POLICY_NAME_MAX + 1];
    struct tl_window_policy p;
    bool stored; /* by WPOLICY SET, in the engine */
};

static pthread_rwlock_t policies_lock = PTHREAD_RWLOCK_INITIALIZER;
/* DEFAULT_SPEC, parsed once by tl_window_init: counter heads with it name it in one byte. */
static struct tl_window_policy builtin_policy;
static struct policy *policies;
static size_t n_policies;

bool tl_policy_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > TL_POLICY_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

/* The slot of the policy named (name, len): an existing one, or a new one at the end (not yet
 * counted). -ENOSPC when the table is full, -ENOMEM. Under the write lock. */
static int policy_slot_locked(const char *name, size_t len, size_t *slot)
{
    size_t i;
    for (i = 0; i < n_policies; i++)
        if (strlen(policies[i].name) == len && memcmp(policies[i].name, name, len) == 0)
            break;
    if (i == n_policies) {
        if (n_policies == POLICIES_MAX)
            return -ENOSPC;
        struct policy *grown = realloc(policies, (n_policies + 1) * sizeof *policies);
        if (!grown)
            return -ENOMEM;
        policies = grown;
        memcpy(policies[i].name, name, len);
        policies[i].name[len] = '\0';
        policies[i].stored = false;
    }
    *slot = i;
    return 0;
}

/* Defines or redefines a policy (name already checked). */
static int policy_define(const char *name, size_t len, const struct tl_window_policy *p,
                         bool stored)
{
    pthread_rwlock_wrlock(&policies_lock);
    size_t i;
    int rc = policy_slot_locked(name, len, &i);
    if (rc == 0) {
        if (i == n_policies)
            n_policies++;
        policies[i].p = *p;
        policies[i].stored |= stored;
    }
    pthread_rwlock_unlock(&policies_lock);
    return rc;
}

static bool policy_find(const char *name, size_t len, struct tl_window_policy *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&policies_lock);
    for (size_t i = 0; i < n_policies && !found; i++) {
        if (strlen(policies[i].name) == len && memcmp(policies[i].name, name, len) == 0) {
            *out = policies[i].p;
            found = true;
        }
    }
    pthread_rwlock_unlock(&policies_lock);
    return found;
}

size_t tl_window_policy_count(void)
{
    pthread_rwlock_rdlock(&policies_lock);
    size_t n = n_policies;
    pthread_rwlock_unlock(&policies_lock);
    return n;
}

/* The engine key of a stored policy. */
static size_t policy_key(const char *name, size_t len, char *out)
{
    memcpy(out, TL_INTERNAL_PREFIX, 2);
    out[2] = KIND_POLICY;
    memcpy(out + 3, name, len);
    return len + 3;
}

int tl_window_init(tl_db *db, const struct tl_config *cfg, char *err, size_t errlen)
{
    struct tl_window_policy p;
    char why[256];
    if (tl_window_policy_parse(DEFAULT_SPEC, strlen(DEFAULT_SPEC), &p, why, sizeof why) < 0 ||
        policy_define(DEFAULT_POLICY, strlen(DEFAULT_POLICY), &p, false) < 0) {
        snprintf(err, errlen, "cannot set up the default window policy: %s", why);
        return -1;
    }
    builtin_policy = p;
    for (int i = 0; i < cfg->n_window_policies; i++) {
        const struct tl_config_policy *cp = &cfg->window_policies[i];
        if (tl_window_policy_parse(cp->spec, strlen(cp->spec), &p, why, sizeof why) < 0 ||
            policy_define(cp->name, strlen(cp->name), &p, false) < 0) {
            snprintf(err, errlen, "window-policy %s: %s", cp->name, why);
            return -1;
        }
    }
    /* Then the ones WPOLICY SET stored. */
    tl_iter *it;
    int rc = tl_iter_new(db, &it);
    if (rc < 0) {
        snprintf(err, errlen, "reading the stored window policies: %s", tl_last_error());
        return -1;
    }
    char start[3];
    size_t slen = policy_key("", 0, start);
    for (rc = tl_iter_seek(it, start, slen); rc >= 0 && tl_iter_valid(it); rc = tl_iter_next(it)) {
        size_t klen;
        const char *k = tl_iter_key(it, &klen);
        if (klen < slen || memcmp(k, start, slen) != 0)
            break;
        struct tl_val v;
        if ((rc = tl_iter_value(it, &v)) < 0)
            break;
        const char *name = k + slen;
        size_t nlen = klen - slen;
        if (v.type != TL_VAL_BYTES || !tl_policy_name_ok(name, nlen) ||
            tl_window_policy_parse(v.bytes, v.len, &p, why, sizeof why) < 0) {
            tl_log(TL_LOG_WARNING, "ignoring a stored window policy that does not parse: %s",
                   v.type == TL_VAL_BYTES ? why : "not text");
        } else if ((rc = policy_define(name, nlen, &p, true)) == -ENOSPC) {
            tl_log(TL_LOG_WARNING,
                   "ignoring the stored window policy '%.*s': more than %d policies are defined",
                   (int)nlen, name, POLICIES_MAX);
            rc = 0;
        }
        tl_val_clear(&v);
        if (rc < 0)
            break;
    }
    tl_iter_free(it);
    if (rc < 0) {
        snprintf(err, errlen, "reading the stored window policies: %s", tl_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- series heads --------------------------------------------------------------------------- */

struct series {
    uint64_t gen;
    int64_t auto_expire_ms;
    /* The policy and, for counters, the head's buckets (w.p, w.live), in the storage's form so
     * that tl_window_incr works on them where they are; w.prefix is set by series_view. */
    struct tl_window_series w;
    char prefix[PREFIX_BYTES];
};

/* The storage's view of a counter series: s itself, with its prefix pointed at. */
static struct tl_window_series *series_view(struct series *s)
{
    s->w.prefix = s->prefix;
    s->w.plen = PREFIX_BYTES;
    return &s->w;
}

static void series_prefix(struct series *s)
{
    memcpy(s->prefix, TL_INTERNAL_PREFIX, 2);
    s->prefix[2] = KIND_BUCKETS;
    for (int i = 0; i < 8; i++)
        s->prefix[3 + i] = (char)(uint8_t)(s->gen >> (56 - 8 * i));
}

/* Reads a varint at *p and moves past it; false when none is there. */
static bool take_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    size_t n = tl_get_varint(*p, end, v);
    *p += n;
    return n != 0;
}

/* Whether two policies have the same resolutions and retentions. */
static bool same_policy(const struct tl_window_policy *a, const struct tl_window_policy *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->res[i].width_ms != b->res[i].width_ms ||
            a->res[i].retention_ms != b->res[i].retention_ms)
            return false;
    return true;
}

/* Encodes a head; with_live: a counter series' head (the current version) with its buckets. */
static size_t head_encode(const struct series *s, bool with_live, uint8_t *out)
{
    size_t n = 0;
    out[n++] = with_live ? HEAD_VERSION_CUR : HEAD_VERSION;
    for (int i = 0; i < 8; i++)
        out[n++] = (uint8_t)(s->gen >> (8 * i));
    n += tl_put_varint(out + n, (uint64_t)s->auto_expire_ms);
    if (with_live && same_policy(&s->w.p, &builtin_policy)) {
        out[n++] = 0;
    } else {
        out[n++] = (uint8_t)s->w.p.n;
        for (int i = 0; i < s->w.p.n; i++) {
            n += tl_put_varint(out + n, (uint64_t)s->w.p.res[i].width_ms);
            n += tl_put_varint(out + n, (uint64_t)s->w.p.res[i].retention_ms);
        }
    }
    if (with_live)
        n += tl_window_live_encode(&s->w.live, &s->w.p, out + n);
    return n;
}

static bool head_decode(const struct tl_val *v, struct series *s)
{
    const uint8_t *p = (const uint8_t *)v->bytes, *end = p + v->len;
    if (v->len < 10 ||
        (p[0] != HEAD_VERSION && p[0] != HEAD_VERSION_LIVE && p[0] != HEAD_VERSION_CUR))
        return false;
    int version = *p++;
    bool live = version != HEAD_VERSION;
    s->gen = 0;
    for (int i = 0; i < 8; i++)
        s->gen |= (uint64_t)*p++ << (8 * i);
    uint64_t x, y;
    if (!take_varint(&p, end, &x) || p == end)
        return false;
    s->auto_expire_ms = (int64_t)x;
    s->w.p.n = *p++;
    if (s->w.p.n == 0 && version == HEAD_VERSION_CUR) {
        s->w.p = builtin_policy;
    } else {
        if (s->w.p.n < 1 || s->w.p.n > TL_WINDOW_MAX_RES)
            return false;
        for (int i = 0; i < s->w.p.n; i++) {
            if (!take_varint(&p, end, &x) || !take_varint(&p, end, &y) || x == 0 || y < x ||
                y > (uint64_t)TL_WINDOW_MAX_TIME_MS)
                return false;
            s->w.p.res[i].width_ms = (int64_t)x;
            s->w.p.res[i].retention_ms = (int64_t)y;
        }
    }
    series_prefix(s);
    tl_window_live_init(&s->w.live);
    s->w.live.legacy = !live && v->tag == TL_TAG_WINDOW;
    if (live) {
        size_t n = tl_window_live_decode(
            p, end, &s->w.p, version == HEAD_VERSION_CUR ? TL_WINDOW_LIVE_V2 : TL_WINDOW_LIVE_V1,
            &s->w.live);
        if (n == 0)
            return false;
        p += n;
    }
    return p == end;
}

/* Reads the head of a series of type tag: 1 found, 0 missing, TL_EWRONGTYPE, or an error. */
static int series_read(struct tl_client *c, const char *key, size_t klen, uint8_t tag,
                       struct series *s)
{
    struct tl_val v;
    int rc = tl_key_get(c, key, klen, &v);
    tl_count_lookup(rc == 1);
    if (rc == 1) {
        if (v.type != TL_VAL_TYPED || v.tag != tag)
            rc = TL_EWRONGTYPE;
        else if (!head_decode(&v, s))
            rc = TL_ECORRUPT;
    }
    tl_val_clear(&v);
    return rc;
}

/* Generations: each thread draws them from a counter that starts at a random point and passes
 * through splitmix64's finalizer (a bijection), reseeded from getrandom(2) every
 * GEN_DRAWS_PER_SEED draws. Within a seed no two draws are equal, and across seeds and threads
 * two collide with the chance of two random 64-bit numbers. One getrandom call a series was a
 * system call on every new series (crng_make_state showed in WINCRBY's profile). */
#define GEN_DRAWS_PER_SEED 65536

static _Thread_local struct {
    uint64_t next;
    uint32_t left;
} gen_source;

static int new_generation(uint64_t *gen)
{
    if (gen_source.left == 0) {
        uint64_t seed;
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
            return -errno;
        gen_source.next = seed;
        gen_source.left = GEN_DRAWS_PER_SEED;
    }
    gen_source.left--;
    uint64_t z = gen_source.next += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    *gen = z ^ (z >> 31);
    return 0;
}

/* The series of a head about to be written at at_ms: decoded, or, for a missing head, a new
 * series with the policy create (refused, creating nothing, when the policy would not keep
 * at_ms). */
static int head_open(const struct tl_val *cur, int found, uint8_t tag,
                     const struct tl_window_policy *create, int64_t at_ms, struct series *s)
{
    if (found) {
        if (cur->type != TL_VAL_TYPED || cur->tag != tag)
            return TL_EWRONGTYPE;
        return head_decode(cur, s) ? 0 : TL_ECORRUPT;
    }
    s->w.p = *create;
    const struct tl_window_res *last = &create->res[create->n - 1];
    if (at_ms < tl_now_ms() - last->retention_ms)
        return -ERANGE;
    s->auto_expire_ms = 0;
    int rc = new_generation(&s->gen);
    if (rc < 0)
        return rc;
    series_prefix(s);
    tl_window_live_init(&s->w.live);
    return 0;
}

/* The automatic expiry of a series written at at_ms: past every bucket the write can make, by
 * one coarsest bucket more, so that it is renewed once per such bucket. */
static int64_t auto_expiry(const struct tl_window_policy *p, int64_t at_ms)
{
    const struct tl_window_res *last = &p->res[p->n - 1];
    return at_ms + last->retention_ms + last->width_ms;
}

/* The expiry a head gets from a write at at_ms, given its current one (cur_ms, when found):
 * an expiry set by the user is kept; the automatic one is renewed when the write's buckets
 * would outlive it. */
static int64_t head_expiry(struct series *s, int found, int64_t cur_ms, int64_t at_ms)
{
    const struct tl_window_res *last = &s->w.p.res[s->w.p.n - 1];
    if (found && (cur_ms != s->auto_expire_ms || cur_ms >= at_ms + last->retention_ms))
        return cur_ms;
    s->auto_expire_ms = auto_expiry(&s->w.p, at_ms);
    return s->auto_expire_ms;
}

struct head_op {
    uint8_t tag;
    int64_t at_ms;
    const struct tl_window_policy *create; /* the policy a new series gets */
    struct series s;
    int found;
    int64_t cur_expire_ms;
    uint8_t buf[HEAD_MAX_BYTES];
};

/* The head of a sketch or HyperLogLog series: written when new or when its expiry moves. */
static int head_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct head_op *op = arg;
    int rc = head_open(cur, found, op->tag, op->create, op->at_ms, &op->s);
    if (rc < 0)
        return rc;
    int64_t expire = head_expiry(&op->s, found, found ? cur->expire_ms : 0, op->at_ms);
    if (found && expire == cur->expire_ms)
        return TL_UPDATE_KEEP;
    next->type = TL_VAL_TYPED;
    next->tag = op->tag;
    next->bytes = (char *)op->buf;
    next->len = head_encode(&op->s, false, op->buf);
    next->expire_ms = expire;
    return TL_UPDATE_PUT;
}

/* A counter series' head, for tl_window_incr: read, then rewritten with its new buckets. */
static int counter_decode(void *arg, const struct tl_val *cur, int found,
                          struct tl_window_series **out)
{
    struct head_op *op = arg;
    int rc = head_open(cur, found, TL_TAG_WINDOW, op->create, op->at_ms, &op->s);
    if (rc < 0)
        return rc;
    op->found = found;
    op->cur_expire_ms = found ? cur->expire_ms : 0;
    *out = series_view(&op->s);
    return 0;
}

static int counter_encode(void *arg, const struct tl_window_series *ws, int64_t at_ms,
                          struct tl_val *next)
{
    struct head_op *op = arg;
    (void)ws; /* op->s.w itself, changed in place */
    next->type = TL_VAL_TYPED;
    next->tag = TL_TAG_WINDOW;
    next->bytes = (char *)op->buf;
    /* The expiry first: it records the automatic one in the head that is encoded. */
    next->expire_ms = head_expiry(&op->s, op->found, op->cur_expire_ms, at_ms);
    next->len = head_encode(&op->s, !op->s.w.live.legacy, op->buf);
    return 0;
}

/* Looks up a policy by name (NULL: the default); replies the error and returns false when
 * there is none. */
static bool policy_for_write(struct tl_client *c, const char *policy, size_t plen,
                             struct tl_window_policy *p)
{
    if (!policy) {
        policy = DEFAULT_POLICY;
        plen = strlen(DEFAULT_POLICY);
    }
    if (policy_find(policy, plen, p))
        return true;
    tl_reply_errorf(c, "ERR no window policy named '%.*s' (WPOLICY LIST shows them)",
                    (int)(plen > 64 ? 64 : plen), policy);
    return false;
}

/* Replies the error of a failed head write: -ERANGE names the policy's limit. */
static void reply_head_error(struct tl_client *c, const struct tl_window_policy *p, int64_t at_ms,
                             int rc)
{
    if (rc == -ERANGE) {
        char lim[32];
        tl_duration_format(p->res[p->n - 1].retention_ms, lim, sizeof lim);
        tl_reply_errorf(c,
                        "ERR timestamp %" PRId64 " ms is older than the policy's longest "
                        "retention (%s before now)",
                        at_ms, lim);
    } else {
        tl_reply_engine_error(c, rc);
    }
}

/* The head of a series of type tag for a write at at_ms, created with the named policy (NULL:
 * default) when missing. Replies the error itself and returns false on failure. */
static bool series_for_write(struct tl_client *c, const char *key, size_t klen, uint8_t tag,
                             const char *policy, size_t plen, int64_t at_ms, struct series *s)
{
    struct tl_window_policy p;
    if (!policy_for_write(c, policy, plen, &p))
        return false;
    struct head_op op = {.tag = tag, .at_ms = at_ms, .create = &p};
    int rc = tl_key_update(c, key, klen, head_update, &op);
    *s = op.s;
    if (rc < 0) {
        reply_head_error(c, &p, at_ms, rc);
        return false;
    }
    return true;
}

/* ---- arguments ------------------------------------------------------------------------------ */

static bool arg_window(struct tl_client *c, const char *s, size_t len, int64_t *ms)
{
    if (tl_duration_parse(s, len, ms))
        return true;
    tl_reply_errorf(c, WINDOW_ARG_ERR, (int)(len > 64 ? 64 : len), s);
    return false;
}

static bool arg_at(struct tl_client *c, const char *s, size_t len, int64_t *ms)
{
    if (tl_parse_int(s, len, ms) && *ms >= 0 && *ms <= TL_WINDOW_MAX_TIME_MS)
        return true;
    tl_reply_error(c, AT_ARG_ERR);
    return false;
}

/* Options at the end of a request: [AT ms] [POLICY name], in any order, parsed from argv[from].
 * Returns false (replied) on a bad one. */
struct opts {
    int64_t at_ms;
    const char *policy;
    size_t policy_len;
};

static bool parse_opts(struct tl_client *c, struct tl_args *a, int from, bool policy_ok,
                       struct opts *o)
{
    o->at_ms = tl_now_ms();
    o->policy = NULL;
    o->policy_len = 0;
    for (int j = from; j < a->argc; j += 2) {
        if (j + 1 >= a->argc) {
            tl_reply_syntax_error(c);
            return false;
        }
        if (tl_arg_eq(a->argv[j], a->len[j], "at")) {
            if (!arg_at(c, a->argv[j + 1], a->len[j + 1], &o->at_ms))
                return false;
        } else if (policy_ok && tl_arg_eq(a->argv[j], a->len[j], "policy")) {
            o->policy = a->argv[j + 1];
            o->policy_len = a->len[j + 1];
        } else {
            tl_reply_syntax_error(c);
            return false;
        }
    }
    return true;
}

/* The reply for a failed window write or read: -ERANGE names the limit. */
static void reply_window_error(struct tl_client *c, int rc)
{
    if (rc == -ERANGE || rc == TL_ETOOBIG)
        tl_reply_errorf(c, "ERR %s", tl_last_error());
    else
        tl_reply_engine_error(c, rc);
}

/* ---- WINCRBY, WGET, WRANGE --------------------------------------------------------------------
 */

/* Replies the sums over windows[] ending at end_ms (missing series: zeros). */
static void reply_sums(struct tl_client *c, struct series *s, bool found, const int64_t *windows,
                       int n, int64_t end_ms)
{
    int64_t sums[MAX_WINDOWS];
    for (int i = 0; i < n; i++) {
        sums[i] = 0;
        if (!found)
            continue;
        int rc = tl_window_sum(tl_srv->db, series_view(s), end_ms, windows[i], &sums[i]);
        if (rc < 0) {
            reply_window_error(c, rc);
            return;
        }
    }
    tl_reply_array(c, (size_t)n);
    for (int i = 0; i < n; i++)
        tl_reply_int(c, sums[i]);
}

/* WINCRBY key delta [AT unix-ms] [POLICY name] [GET window [window ...]] */
static void cmd_wincrby(struct tl_client *c, struct tl_args *a)
{
    int64_t delta;
    if (!tl_arg_int(c, a->argv[2], a->len[2], &delta))
        return;
    int get = a->argc;
    for (int j = 3; j < a->argc; j++) {
        if (tl_arg_eq(a->argv[j], a->len[j], "get")) {
            get = j;
            break;
        }
        j++; /* AT and POLICY take a value */
    }
    struct opts o;
    int64_t windows[MAX_WINDOWS];
    int nw = a->argc - get - 1;
    if (get < a->argc && (nw < 1 || nw > MAX_WINDOWS)) {
        tl_reply_errorf(c, "ERR GET takes 1 to %d windows", MAX_WINDOWS);
        return;
    }
    for (int i = 0; i < nw; i++)
        if (!arg_window(c, a->argv[get + 1 + i], a->len[get + 1 + i], &windows[i]))
            return;
    struct tl_args head = *a;
    head.argc = get;
    if (!parse_opts(c, &head, 3, true, &o))
        return;
    struct tl_window_policy p;
    if (!policy_for_write(c, o.policy, o.policy_len, &p))
        return;
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, a->argv[1], a->len[1]);
    if (rc < 0) {
        tl_dbkey_free(&k);
        tl_reply_engine_error(c, rc);
        return;
    }
    /* Set field by field: the series and the buffer (a kilobyte together) are written before
     * they are read, and zeroing them showed in WINCRBY's profile (storage/window.c's
     * tl_window_incr says what this and its own copies were worth). */
    struct head_op op;
    op.tag = TL_TAG_WINDOW;
    op.at_ms = o.at_ms;
    op.create = &p;
    op.found = 0;
    op.cur_expire_ms = 0;
    struct tl_window_head h = {k.p, k.len, counter_decode, counter_encode, &op};
    uint64_t seq = 0;
    int64_t finest = 0;
    rc = tl_window_incr(tl_srv->db, &h, o.at_ms, delta, &finest, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    if (rc == -ERANGE)
        reply_head_error(c, &op.s.w.p, o.at_ms, rc); /* the series' own policy, or the new one's */
    else if (rc < 0)
        reply_window_error(c, rc);
    else if (get == a->argc)
        tl_reply_int(c, finest);
    else
        reply_sums(c, &op.s, true, windows, nw, o.at_ms);
}

/* WGET key window [window ...] [AT unix-ms] */
static void cmd_wget(struct tl_client *c, struct tl_args *a)
{
    int end = a->argc;
    if (a->argc >= 5 && tl_arg_eq(a->argv[a->argc - 2], a->len[a->argc - 2], "at"))
        end = a->argc - 2;
    int64_t windows[MAX_WINDOWS];
    int nw = end - 2;
    if (nw > MAX_WINDOWS) {
        tl_reply_errorf(c, "ERR WGET takes 1 to %d windows", MAX_WINDOWS);
        return;
    }
    for (int i = 0; i < nw; i++)
        if (!arg_window(c, a->argv[2 + i], a->len[2 + i], &windows[i]))
            return;
    struct opts o;
    if (!parse_opts(c, a, end, false, &o))
        return;
    struct series s;
    int rc = series_read(c, a->argv[1], a->len[1], TL_TAG_WINDOW, &s);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    reply_sums(c, &s, rc == 1, windows, nw, o.at_ms);
}

struct range_acc {
    int64_t *pairs; /* start, value, ... */
    size_t n, cap;  /* pairs */
};

static int range_bucket(void *arg, int res, int64_t start, const struct tl_val *v)
{
    (void)res;
    struct range_acc *r = arg;
    if (v->type != TL_VAL_INT)
        return TL_ECORRUPT;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        int64_t *p = realloc(r->pairs, cap * 2 * sizeof *p);
        if (!p)
            return -ENOMEM;
        r->pairs = p;
        r->cap = cap;
    }
    r->pairs[2 * r->n] = start;
    r->pairs[2 * r->n + 1] = v->i;
    r->n++;
    return 0;
}

/* WRANGE key from-ms to-ms [RES resolution]: the buckets overlapping [from, to], oldest first,
 * as start, value pairs. */
static void cmd_wrange(struct tl_client *c, struct tl_args *a)
{
    int64_t from, to, res_ms = 0;
    if (!tl_arg_int(c, a->argv[2], a->len[2], &from) || !tl_arg_int(c, a->argv[3], a->len[3], &to))
        return;
    if (a->argc == 6 && tl_arg_eq(a->argv[4], a->len[4], "res")) {
        if (!tl_duration_parse(a->argv[5], a->len[5], &res_ms)) {
            tl_reply_errorf(c, "ERR invalid resolution '%.*s': give a duration such as 1m or 1h",
                            (int)(a->len[5] > 64 ? 64 : a->len[5]), a->argv[5]);
            return;
        }
    } else if (a->argc != 4) {
        tl_reply_syntax_error(c);
        return;
    }
    struct series s;
    int rc = series_read(c, a->argv[1], a->len[1], TL_TAG_WINDOW, &s);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    if (rc == 0 || from > to) {
        tl_reply_array(c, 0);
        return;
    }
    int res = 0;
    if (res_ms) {
        for (res = 0; res < s.w.p.n && s.w.p.res[res].width_ms != res_ms; res++)
            ;
        if (res == s.w.p.n) {
            char spec[SPEC_TEXT_BYTES];
            tl_window_policy_format(&s.w.p, spec, sizeof spec);
            tl_reply_errorf(c, "ERR the series has no resolution of %.*s: its policy is %s",
                            (int)(a->len[5] > 64 ? 64 : a->len[5]), a->argv[5], spec);
            return;
        }
    }
    int64_t w = s.w.p.res[res].width_ms;
    int64_t lo = from < 0 ? 0 : from - ((from % w) + w) % w;
    /* Buckets past the resolution's retention are gone, those the head holds too. */
    int64_t held = tl_now_ms() - s.w.p.res[res].retention_ms;
    held += ((w - held % w) % w + w) % w;
    if (lo < held)
        lo = held;
    int64_t hi = to >= TL_WINDOW_MAX_TIME_MS ? TL_WINDOW_MAX_TIME_MS : to + 1;
    struct range_acc r = {0};
    rc = tl_window_range(tl_srv->db, s.prefix, PREFIX_BYTES, &s.w.live, res, lo, hi, range_bucket,
                         &r);
    if (rc < 0) {
        reply_window_error(c, rc);
    } else {
        tl_reply_array(c, 2 * r.n);
        for (size_t i = 0; i < 2 * r.n; i++)
            tl_reply_int(c, r.pairs[i]);
    }
    free(r.pairs);
}

/* ---- WOBSERVE, WSTATS, WQUANTILE ------------------------------------------------------------ */

struct observe_op {
    double value;
    struct tl_buf enc;
};

static int observe_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct observe_op *op = arg;
    struct tl_sketch sk;
    tl_sketch_init(&sk);
    int rc = 0;
    if (found)
        rc = cur->type == TL_VAL_BYTES ? tl_sketch_decode(&sk, cur->bytes, cur->len) : TL_ECORRUPT;
    if (rc == 0)
        rc = tl_sketch_add(&sk, op->value);
    op->enc.len = 0;
    if (rc == 0)
        rc = tl_sketch_encode(&sk, &op->enc);
    tl_sketch_free(&sk);
    if (rc < 0)
        return rc;
    next->type = TL_VAL_BYTES;
    next->bytes = op->enc.data;
    next->len = op->enc.len;
    return TL_UPDATE_PUT;
}

/* WOBSERVE key value [AT unix-ms] [POLICY name] */
static void cmd_wobserve(struct tl_client *c, struct tl_args *a)
{
    long double v;
    if (!tl_arg_float(c, a->argv[2], a->len[2], &v))
        return;
    if (!isfinite((double)v)) {
        tl_reply_error(c, "ERR the observation is not a finite double");
        return;
    }
    struct opts o;
    if (!parse_opts(c, a, 3, true, &o))
        return;
    struct series s;
    if (!series_for_write(c, a->argv[1], a->len[1], TL_TAG_WSKETCH, o.policy, o.policy_len, o.at_ms,
                          &s))
        return;
    struct observe_op op = {.value = (double)v};
    uint64_t seq = 0;
    int res;
    int rc = tl_window_update(tl_srv->db, s.prefix, PREFIX_BYTES, &s.w.p, o.at_ms, observe_update,
                              &op, &res, &seq);
    tl_note_seq(c, seq);
    tl_buf_free(&op.enc);
    if (rc < 0)
        reply_window_error(c, rc);
    else
        tl_reply_ok(c);
}

static int sketch_bucket(void *arg, int res, int64_t start, const struct tl_val *v)
{
    (void)res;
    (void)start;
    if (v->type != TL_VAL_BYTES)
        return TL_ECORRUPT;
    return tl_sketch_decode(arg, v->bytes, v->len);
}

/* Reads the sketch of a window of a WOBSERVE series into sk (empty for a missing key). Replies
 * the error itself and returns false on failure. */
static bool window_sketch(struct tl_client *c, struct tl_args *a, int window_arg, int64_t end_ms,
                          struct tl_sketch *sk)
{
    int64_t w;
    if (!arg_window(c, a->argv[window_arg], a->len[window_arg], &w))
        return false;
    struct series s;
    int rc = series_read(c, a->argv[1], a->len[1], TL_TAG_WSKETCH, &s);
    if (rc == 1)
        rc = tl_window_visit(tl_srv->db, s.prefix, PREFIX_BYTES, &s.w.p, NULL, end_ms, w,
                             sketch_bucket, sk);
    if (rc < 0) {
        reply_window_error(c, rc);
        return false;
    }
    return true;
}

static void reply_double_or_null(struct tl_client *c, double d)
{
    if (isnan(d))
        tl_reply_null(c);
    else
        tl_reply_double(c, d);
}

/* WSTATS key window [AT unix-ms]: count, sum, min, max, mean. */
static void cmd_wstats(struct tl_client *c, struct tl_args *a)
{
    struct opts o;
    if (!parse_opts(c, a, 3, false, &o))
        return;
    struct tl_sketch sk;
    tl_sketch_init(&sk);
    if (window_sketch(c, a, 2, o.at_ms, &sk)) {
        uint64_t n = tl_sketch_count(&sk);
        tl_reply_array(c, 5);
        tl_reply_int(c, (int64_t)n);
        tl_reply_double(c, tl_sketch_sum(&sk));
        reply_double_or_null(c, tl_sketch_min(&sk));
        reply_double_or_null(c, tl_sketch_max(&sk));
        reply_double_or_null(c, n ? tl_sketch_sum(&sk) / (double)n : NAN);
    }
    tl_sketch_free(&sk);
}

/* WQUANTILE key window q [q ...] [AT unix-ms] */
static void cmd_wquantile(struct tl_client *c, struct tl_args *a)
{
    int end = a->argc;
    if (a->argc >= 6 && tl_arg_eq(a->argv[a->argc - 2], a->len[a->argc - 2], "at"))
        end = a->argc - 2;
    struct opts o;
    if (!parse_opts(c, a, end, false, &o))
        return;
    int nq = end - 3;
    double *qs = malloc((size_t)nq * sizeof *qs);
    if (!qs) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    for (int i = 0; i < nq; i++) {
        long double q;
        if (!tl_parse_float(a->argv[3 + i], a->len[3 + i], &q) || q < 0 || q > 1) {
            tl_reply_errorf(c, "ERR quantile '%.*s' is not a number from 0 to 1",
                            (int)(a->len[3 + i] > 64 ? 64 : a->len[3 + i]), a->argv[3 + i]);
            free(qs);
            return;
        }
        qs[i] = (double)q;
    }
    struct tl_sketch sk;
    tl_sketch_init(&sk);
    if (window_sketch(c, a, 2, o.at_ms, &sk)) {
        tl_reply_array(c, (size_t)nq);
        for (int i = 0; i < nq; i++)
            reply_double_or_null(c, tl_sketch_quantile(&sk, qs[i]));
    }
    tl_sketch_free(&sk);
    free(qs);
}

/* ---- WPFADD, WPFCOUNT ----------------------------------------------------------------------- */

struct wpfadd_op {
    struct tl_hll_add *add;
    int res;
    bool changed; /* in the finest bucket written */
    bool any;
};

static int wpfadd_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct wpfadd_op *op = arg;
    int action = tl_hll_add_update(op->add, cur, found, next);
    if (tl_hll_add_bad_value(op->add))
        return TL_ECORRUPT;
    if (!op->any)
        op->changed = tl_hll_add_changed(op->add);
    op->any = true;
    return action;
}

/* WPFADD key element [element ...] [AT unix-ms] [POLICY name]: trailing option pairs are taken
 * as options, so an element named AT or POLICY must not be among the last two arguments. */
static void cmd_wpfadd(struct tl_client *c, struct tl_args *a)
{
    int end = a->argc;
    while (end - 2 >= 3 && (tl_arg_eq(a->argv[end - 2], a->len[end - 2], "at") ||
                            tl_arg_eq(a->argv[end - 2], a->len[end - 2], "policy")))
        end -= 2;
    struct opts o;
    if (!parse_opts(c, a, end, true, &o))
        return;
    struct series s;
    if (!series_for_write(c, a->argv[1], a->len[1], TL_TAG_WHLL, o.policy, o.policy_len, o.at_ms,
                          &s))
        return;
    struct wpfadd_op op = {.add = tl_hll_add_new(a, 2, end)};
    if (!op.add) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    uint64_t seq = 0;
    int rc = tl_window_update(tl_srv->db, s.prefix, PREFIX_BYTES, &s.w.p, o.at_ms, wpfadd_update,
                              &op, &op.res, &seq);
    tl_note_seq(c, seq);
    tl_hll_add_free(op.add);
    if (rc < 0)
        reply_window_error(c, rc);
    else
        tl_reply_int(c, op.changed ? 1 : 0);
}

static int hll_bucket(void *arg, int res, int64_t start, const struct tl_val *v)
{
    (void)res;
    (void)start;
    return tl_hll_union_add(arg, v) < 0 ? TL_ECORRUPT : 0;
}

/* WPFCOUNT key window [AT unix-ms] */
static void cmd_wpfcount(struct tl_client *c, struct tl_args *a)
{
    struct opts o;
    int64_t w;
    if (!parse_opts(c, a, 3, false, &o) || !arg_window(c, a->argv[2], a->len[2], &w))
        return;
    struct series s;
    int rc = series_read(c, a->argv[1], a->len[1], TL_TAG_WHLL, &s);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    if (rc == 0) {
        tl_reply_int(c, 0);
        return;
    }
    struct tl_hll_union *u = tl_hll_union_new();
    if (!u) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    rc = tl_window_visit(tl_srv->db, s.prefix, PREFIX_BYTES, &s.w.p, NULL, o.at_ms, w, hll_bucket,
                         u);
    if (rc < 0)
        reply_window_error(c, rc);
    else
        tl_reply_int(c, (int64_t)tl_hll_union_count(u));
    tl_hll_union_free(u);
}

/* ---- WPOLICY -------------------------------------------------------------------------------- */

static void cmd_wpolicy_set(struct tl_client *c, struct tl_args *a)
{
    if (!tl_policy_name_ok(a->argv[2], a->len[2])) {
        tl_reply_errorf(c, "ERR invalid policy name '%.*s': 1 to %d letters, digits or _ - . :",
                        (int)(a->len[2] > 64 ? 64 : a->len[2]), a->argv[2], TL_POLICY_NAME_MAX);
        return;
    }
    struct tl_window_policy p;
    char why[256];
    if (tl_window_policy_parse(a->argv[3], a->len[3], &p, why, sizeof why) < 0) {
        tl_reply_errorf(c, "ERR invalid window policy: %s", why);
        return;
    }
    char spec[SPEC_TEXT_BYTES], key[3 + TL_POLICY_NAME_MAX];
    size_t slen = tl_window_policy_format(&p, spec, sizeof spec);
    size_t klen = policy_key(a->argv[2], a->len[2], key);
    uint64_t seq = 0;
    /* Room first, then the engine, then the table, under one lock: what is stored is always
     * what the table holds, and a policy refused here is not stored either. */
    pthread_rwlock_wrlock(&policies_lock);
    size_t i;
    int rc = policy_slot_locked(a->argv[2], a->len[2], &i);
    if (rc == 0)
        rc = tl_db_put(tl_srv->db, key, klen, spec, slen, 0, &seq);
    if (rc == 0) {
        if (i == n_policies)
            n_policies++;
        policies[i].p = p;
        policies[i].stored = true;
    }
    pthread_rwlock_unlock(&policies_lock);
    tl_note_seq(c, seq);
    if (rc == -ENOSPC)
        tl_reply_errorf(c, "ERR too many window policies (the limit is %d)", POLICIES_MAX);
    else if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_ok(c);
}

int tl_window_policies_restore(tl_db *db)
{
    int rc = 0;
    pthread_rwlock_rdlock(&policies_lock);
    for (size_t i = 0; i < n_policies && rc == 0; i++) {
        if (!policies[i].stored)
            continue;
        char spec[SPEC_TEXT_BYTES], key[3 + TL_POLICY_NAME_MAX];
        size_t slen = tl_window_policy_format(&policies[i].p, spec, sizeof spec);
        size_t klen = policy_key(policies[i].name, strlen(policies[i].name), key);
        rc = tl_db_put(db, key, klen, spec, slen, 0, NULL);
    }
    pthread_rwlock_unlock(&policies_lock);
    return rc;
}

static void cmd_wpolicy_get(struct tl_client *c, struct tl_args *a)
{
    struct tl_window_policy p;
    if (!policy_find(a->argv[2], a->len[2], &p)) {
        tl_reply_null(c);
        return;
    }
    char spec[SPEC_TEXT_BYTES];
    tl_reply_bulk(c, spec, tl_window_policy_format(&p, spec, sizeof spec));
}

static int cmp_policy(const void *x, const void *y)
{
    return strcmp(((const struct policy *)x)->name, ((const struct policy *)y)->name);
}

static void cmd_wpolicy_list(struct tl_client *c, struct tl_args *a)
{
    (void)a;
    pthread_rwlock_rdlock(&policies_lock);
    size_t n = n_policies;
    struct policy *copy = malloc((n ? n : 1) * sizeof *copy);
    if (copy && n)
        memcpy(copy, policies, n * sizeof *copy);
    pthread_rwlock_unlock(&policies_lock);
    if (!copy) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    qsort(copy, n, sizeof *copy, cmp_policy);
    tl_reply_array(c, 2 * n);
    for (size_t i = 0; i < n; i++) {
        char spec[SPEC_TEXT_BYTES];
        tl_reply_cstr(c, copy[i].name);
        tl_reply_bulk(c, spec, tl_window_policy_format(&copy[i].p, spec, sizeof spec));
    }
    free(copy);
}

static void cmd_wpolicy_help(struct tl_client *c, struct tl_args *a)
{
    (void)a;
    static const char *const lines[] = {
        "SET <name> <spec>",
        "    Define a policy: resolution:retention pairs, finest first (1m:3h,1h:8d,1d:400d).",
        "    Series created later with POLICY <name> use it; existing series keep theirs.",
        "GET <name>",
        "    Return the policy's spec, or nil.",
        "LIST",
        "    Return every policy as name, spec pairs.",
        NULL,
    };
    tl_reply_help(c, "WPOLICY", lines);
}

#define W  TL_CMD_WRITE
#define RO TL_CMD_READONLY
#define F  TL_CMD_FAST

static const struct tl_command wpolicy_subcommands[] = {
    {"set", 4, W, 0, 0, 0, cmd_wpolicy_set, "window", "0.1.0", "Defines a window policy.", "O(1)",
     "name spec", NULL},
    {"get", 3, RO, 0, 0, 0, cmd_wpolicy_get, "window", "0.1.0", "Returns a window policy.", "O(1)",
     "name", NULL},
    {"list", 2, RO, 0, 0, 0, cmd_wpolicy_list, "window", "0.1.0", "Lists the window policies.",
     "O(N)", "", NULL},
    {"help", 2, RO, 0, 0, 0, cmd_wpolicy_help, "window", "0.1.0", "Shows helpful text.", "O(1)", "",
     NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_wpolicy(struct tl_client *c, struct tl_args *a)
{
    tl_run_subcommand(c, a, "wpolicy", wpolicy_subcommands);
}

const struct tl_command tl_commands_window[] = {
    {"wincrby", -3, W | F, 1, 1, 1, cmd_wincrby, "window", "0.1.0",
     "Adds to the current bucket of every resolution of a windowed counter.",
     "O(resolutions), O(buckets) with GET",
     "key delta [AT unix-ms] [POLICY name] [GET window [window ...]]", NULL},
    {"wget", -3, RO, 1, 1, 1, cmd_wget, "window", "0.1.0",
     "Returns the sums of a windowed counter over sliding windows.", "O(buckets)",
     "key window [window ...] [AT unix-ms]", NULL},
    {"wrange", -4, RO, 1, 1, 1, cmd_wrange, "window", "0.1.0",
     "Returns the buckets of a windowed counter in a time range.", "O(buckets)",
     "key from-ms to-ms [RES resolution]", NULL},
    {"wobserve", -3, W, 1, 1, 1, cmd_wobserve, "window", "0.1.0",
     "Records an observation in a windowed quantile sketch.", "O(resolutions)",
     "key value [AT unix-ms] [POLICY name]", NULL},
    {"wstats", -3, RO, 1, 1, 1, cmd_wstats, "window", "0.1.0",
     "Returns count, sum, min, max and mean of the observations in a window.", "O(buckets)",
     "key window [AT unix-ms]", NULL},
    {"wquantile", -4, RO, 1, 1, 1, cmd_wquantile, "window", "0.1.0",
     "Returns quantiles of the observations in a window.", "O(buckets)",
     "key window q [q ...] [AT unix-ms]", NULL},
    {"wpfadd", -3, W, 1, 1, 1, cmd_wpfadd, "window", "0.1.0",
     "Adds elements to the distinct count of every resolution's current bucket.",
     "O(elements x resolutions)", "key element [element ...] [AT unix-ms] [POLICY name]", NULL},
    {"wpfcount", -3, RO, 1, 1, 1, cmd_wpfcount, "window", "0.1.0",
     "Returns the approximate number of distinct elements added in a window.", "O(buckets)",
     "key window [AT unix-ms]", NULL},
    {"wpolicy", -2, 0, 0, 0, 0, cmd_wpolicy, "window", "0.1.0", "Manages window policies.",
     "Depends on subcommand", "subcommand [argument [argument ...]]", wpolicy_subcommands},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
