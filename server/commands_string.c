/*
 * commands_string.c - Redis's string commands over the engine (GET, SET and its options,
 * SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, INCR, DECR, INCRBY,
 * DECRBY, INCRBYFLOAT, APPEND, STRLEN) and INCREX as Redis 8.8 defines it.
 *
 * Values: the engine keeps an integer or bytes; a byte value that reads as a canonical integer
 * is stored as an integer and shown as its decimal text, so clients see Redis's strings.
 *
 * Atomicity: a command that reads a key and then decides what to write (SET NX/XX/GET/KEEPTTL,
 * SETNX, GETSET, GETDEL, GETEX, APPEND, INCREX) does both inside one tl_db_update() callback,
 * which the engine runs under the key's write lock. Callbacks copy what the reply needs out
 * of the current value (valid only during the call) and never call into the engine.
 *
 * Expiry: the engine takes absolute unix milliseconds (0 = none). As in Redis, a command that
 * sets an expiry time already in the past (at or before now) leaves the key deleted.
 *
 * Durability: every engine write reports its WAL sequence number; the handler raises
 * c->wait_seq to it so that net.c holds the reply until the WAL has the record.
 *
 * Keys: every engine call takes the engine key of the client's database (tl_dbkey_make with
 * c->db, keyspace.c); the wrappers below build it.
 */
#include <errno.h>
#include <inttypes.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* The decimal text of any int64 fits in this, with its NUL. */
#define INT_TEXT_BUF 24
#define MS_PER_S     1000

/* ---- shared helpers ------------------------------------------------------------------------ */

/* Copies an engine value (whose bytes may be borrowed) into one that owns its bytes. */
static int val_copy(struct tl_val *dst, const struct tl_val *src)
{
    *dst = *src;
    dst->bytes = NULL;
    if (src->type != TL_VAL_BYTES)
        return 0;
    dst->bytes = malloc(src->len ? src->len : 1);
    if (!dst->bytes)
        return -ENOMEM;
    memcpy(dst->bytes, src->bytes, src->len);
    return 0;
}

/* The length of a value as a string: an integer's decimal text, or the bytes. */
static size_t val_strlen(const struct tl_val *v)
{
    if (v->type == TL_VAL_INT) {
        char buf[INT_TEXT_BUF];
        return (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
    }
    return v->len;
}

/* Replies a value that may be absent: the value, or a null. */
static void reply_maybe_val(struct tl_client *c, bool found, const struct tl_val *v)
{
    if (found)
        tl_reply_val(c, v);
    else
        tl_reply_null(c);
}

/* Whether a value is over max-value-bytes, replying the error if so. Checked before writing, so
 * that a conditional write answers the same error as a plain one and MSET writes nothing. */
static bool value_too_big(struct tl_client *c, size_t vlen)
{
    long long max = __atomic_load_n(&tl_srv->cfg.max_value_bytes, __ATOMIC_RELAXED);
    if (vlen <= (unsigned long long)max)
        return false;
    tl_reply_error(c, "ERR string exceeds maximum allowed size (max-value-bytes)");
    return true;
}

/* Whether every key and value of MSET's or MSETNX's pairs is within its limit, replying the
 * error if not: checked before the first write, so that a refused command writes nothing. */
static bool pairs_fit(struct tl_client *c, const struct tl_args *a)
{
    for (int j = 1; j + 1 < a->argc; j += 2) {
        if (a->len[j] > TL_MAX_USER_KEY_BYTES) {
            tl_reply_engine_error(c, TL_EKEYTOOLONG);
            return false;
        }
        if (value_too_big(c, a->len[j + 1]))
            return false;
    }
    return true;
}

/* How an expiry argument is given. */
enum expire_unit { UNIT_S, UNIT_MS };
enum expire_base { BASE_RELATIVE, BASE_ABSOLUTE };

enum expire_parse {
    EXPIRE_OK = 0,
    EXPIRE_NOT_INT, /* "value is not an integer or out of range" */
    EXPIRE_INVALID, /* "invalid expire time in '<cmd>' command" */
};

/* Turns an EX/PX/EXAT/PXAT argument into absolute unix ms, with Redis's rules for SET, GETEX,
 * SETEX and PSETEX: the number must be positive, and neither the conversion to milliseconds
 * nor the addition of now may overflow. */
static enum expire_parse parse_expire(const char *s, size_t len, enum expire_unit unit,
                                      enum expire_base base, int64_t now_ms, int64_t *out_ms)
{
    int64_t v;
    if (!tl_parse_int(s, len, &v))
        return EXPIRE_NOT_INT;
    if (v <= 0)
        return EXPIRE_INVALID;
    if (unit == UNIT_S) {
        if (v > INT64_MAX / MS_PER_S)
            return EXPIRE_INVALID;
        v *= MS_PER_S;
    }
    if (base == BASE_RELATIVE) {
        if (v > INT64_MAX - now_ms)
            return EXPIRE_INVALID;
        v += now_ms;
    }
    *out_ms = v;
    return EXPIRE_OK;
}

static void reply_expire_error(struct tl_client *c, enum expire_parse e, const char *cmd)
{
    if (e == EXPIRE_NOT_INT)
        tl_reply_error(c, "ERR value is not an integer or out of range");
    else
        tl_reply_errorf(c, "ERR invalid expire time in '%s' command", cmd);
}

/* Recognizes EX, PX, EXAT and PXAT; returns false for anything else. */
static bool expire_keyword(const char *s, size_t len, enum expire_unit *unit,
                           enum expire_base *base)
{
    static const struct {
        const char *word;
        enum expire_unit unit;
        enum expire_base base;
    } words[] = {
        {"ex", UNIT_S, BASE_RELATIVE},
        {"px", UNIT_MS, BASE_RELATIVE},
        {"exat", UNIT_S, BASE_ABSOLUTE},
        {"pxat", UNIT_MS, BASE_ABSOLUTE},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (tl_arg_eq(s, len, words[i].word)) {
            *unit = words[i].unit;
            *base = words[i].base;
            return true;
        }
    }
    return false;
}

/* ---- GET, MGET, STRLEN ---------------------------------------------------------------------- */

static void cmd_get(struct tl_client *c, struct tl_args *a)
{
    struct tl_val v;
    int rc = tl_key_get_string(c, a->argv[1], a->len[1], &v);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    tl_count_lookup(rc == 1);
    reply_maybe_val(c, rc == 1, &v);
    tl_val_clear(&v);
}

static void cmd_mget(struct tl_client *c, struct tl_args *a)
{
    size_t n = (size_t)a->argc - 1;
    /* Read every key first, so that an engine error replies one error, not half an array. */
    struct tl_val *vals = calloc(n, sizeof *vals);
    bool *found = calloc(n, sizeof *found);
    int rc = 0;
    if (!vals || !found) {
        rc = -ENOMEM;
        goto cleanup;
    }
    if ((rc = tl_keys_get(c, a->argv + 1, a->len + 1, n, vals)) < 0)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        /* Absent keys are left without a type. As in Redis, a key of another type (a typed
         * value) reads as missing. */
        found[i] = vals[i].type == TL_VAL_INT || vals[i].type == TL_VAL_BYTES;
        tl_count_lookup(found[i]);
    }
    rc = 0;
    tl_reply_array(c, n);
    for (size_t i = 0; i < n; i++)
        reply_maybe_val(c, found[i], &vals[i]);
cleanup:
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    if (vals) {
        for (size_t i = 0; i < n; i++)
            tl_val_clear(&vals[i]);
    }
    free(vals);
    free(found);
}

static void cmd_strlen(struct tl_client *c, struct tl_args *a)
{
    struct tl_val v;
    int rc = tl_key_get_string(c, a->argv[1], a->len[1], &v);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    tl_count_lookup(rc == 1);
    tl_reply_int(c, rc == 1 ? (int64_t)val_strlen(&v) : 0);
    tl_val_clear(&v);
}

/* ---- SET and its relatives ------------------------------------------------------------------ */

enum set_cond { SET_ALWAYS, SET_NX, SET_XX };

/* One conditional SET, decided under the key's lock. */
struct set_op {
    const char *val;
    size_t vlen;
    enum set_cond cond;
    bool get; /* capture the old value */
    bool keepttl;
    int64_t expire_ms; /* 0: none */
    bool expired;      /* the expiry is already past: the key ends deleted */
    /* results */
    bool found;
    bool applied;
    struct tl_val old; /* when get and found */
};

static int set_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct set_op *op = arg;
    op->found = found;
    if (op->get && tl_check_string(found, cur))
        return TL_EWRONGTYPE;
    if (found && op->get && val_copy(&op->old, cur) < 0)
        return -ENOMEM;
    if ((op->cond == SET_NX && found) || (op->cond == SET_XX && !found))
        return TL_UPDATE_KEEP;
    op->applied = true;
    if (op->expired)
        return found ? TL_UPDATE_DELETE : TL_UPDATE_KEEP;
    next->type = TL_VAL_BYTES;
    next->bytes = (char *)op->val;
    next->len = op->vlen;
    next->expire_ms = op->keepttl && found ? cur->expire_ms : op->expire_ms;
    return TL_UPDATE_PUT;
}

/* Runs op on key: a plain store when no option needs the current value, else one update.
 * Returns 0 or an engine error (already counted in c->wait_seq either way). */
static int set_run(struct tl_client *c, const char *key, size_t klen, struct set_op *op)
{
    int rc;
    if (op->cond == SET_ALWAYS && !op->get && !op->keepttl) {
        op->applied = true;
        if (op->expired)
            rc = tl_key_delete(c, key, klen, NULL);
        else
            rc = tl_key_put(c, key, klen, op->val, op->vlen, op->expire_ms);
    } else {
        rc = tl_key_update(c, key, klen, set_update, op);
    }
    return rc < 0 ? rc : 0;
}

/* SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL] */
static void cmd_set(struct tl_client *c, struct tl_args *a)
{
    struct set_op op = {.val = a->argv[2], .vlen = a->len[2]};
    bool has_expire = false;
    enum expire_unit unit = UNIT_S;
    enum expire_base base = BASE_RELATIVE;
    int expire_arg = 0;

    /* The options first, all of them, as Redis does: a syntax error wins over a bad number. */
    for (int j = 3; j < a->argc; j++) {
        const char *s = a->argv[j];
        size_t len = a->len[j];
        enum expire_unit u;
        enum expire_base b;
        if (tl_arg_eq(s, len, "nx") && op.cond != SET_XX) {
            op.cond = SET_NX;
        } else if (tl_arg_eq(s, len, "xx") && op.cond != SET_NX) {
            op.cond = SET_XX;
        } else if (tl_arg_eq(s, len, "get")) {
            op.get = true;
        } else if (tl_arg_eq(s, len, "keepttl") && !has_expire) {
            op.keepttl = true;
        } else if (expire_keyword(s, len, &u, &b) && !op.keepttl &&
                   (!has_expire || (u == unit && b == base)) && j + 1 < a->argc) {
            /* As in Redis, an option may repeat (the last one counts), but two different
             * expiry options conflict. */
            has_expire = true;
            unit = u;
            base = b;
            expire_arg = ++j;
        } else {
            tl_reply_syntax_error(c);
            return;
        }
    }
    int64_t now = tl_now_ms();
    if (has_expire) {
        enum expire_parse e =
            parse_expire(a->argv[expire_arg], a->len[expire_arg], unit, base, now, &op.expire_ms);
        if (e != EXPIRE_OK) {
            reply_expire_error(c, e, "set");
            return;
        }
        op.expired = op.expire_ms <= now;
    }
    if (value_too_big(c, op.vlen))
        return;
    int rc = set_run(c, a->argv[1], a->len[1], &op);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
    } else if (op.get) {
        tl_count_lookup(op.found);
        reply_maybe_val(c, op.found, &op.old);
    } else if (op.applied) {
        tl_reply_ok(c);
    } else {
        tl_reply_null(c);
    }
    tl_val_clear(&op.old);
}

static void cmd_setnx(struct tl_client *c, struct tl_args *a)
{
    struct set_op op = {.val = a->argv[2], .vlen = a->len[2], .cond = SET_NX};
    if (value_too_big(c, op.vlen))
        return;
    int rc = set_run(c, a->argv[1], a->len[1], &op);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, op.applied ? 1 : 0);
}

/* SETEX key seconds value / PSETEX key milliseconds value */
static void setex_generic(struct tl_client *c, struct tl_args *a, enum expire_unit unit,
                          const char *cmd)
{
    int64_t now = tl_now_ms();
    struct set_op op = {.val = a->argv[3], .vlen = a->len[3]};
    enum expire_parse e =
        parse_expire(a->argv[2], a->len[2], unit, BASE_RELATIVE, now, &op.expire_ms);
    if (e != EXPIRE_OK) {
        reply_expire_error(c, e, cmd);
        return;
    }
    op.expired = op.expire_ms <= now;
    if (value_too_big(c, op.vlen))
        return;
    int rc = set_run(c, a->argv[1], a->len[1], &op);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_ok(c);
}

static void cmd_setex(struct tl_client *c, struct tl_args *a)
{
    setex_generic(c, a, UNIT_S, "setex");
}

static void cmd_psetex(struct tl_client *c, struct tl_args *a)
{
    setex_generic(c, a, UNIT_MS, "psetex");
}

/* GETSET key value: SET key value GET, without options (the expiry is dropped). */
static void cmd_getset(struct tl_client *c, struct tl_args *a)
{
    struct set_op op = {.val = a->argv[2], .vlen = a->len[2], .get = true};
    if (value_too_big(c, op.vlen))
        return;
    int rc = set_run(c, a->argv[1], a->len[1], &op);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
    } else {
        tl_count_lookup(op.found);
        reply_maybe_val(c, op.found, &op.old);
    }
    tl_val_clear(&op.old);
}

/* ---- GETDEL, GETEX -------------------------------------------------------------------------- */

enum getex_mode { GETEX_KEEP, GETEX_SET, GETEX_PERSIST, GETEX_DELETE };

struct getex_op {
    enum getex_mode mode;
    int64_t expire_ms;
    enum expire_parse parse; /* of the expiry argument; only reported when the key exists */
    bool found;
    struct tl_val old;
};

static int getex_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct getex_op *op = arg;
    op->found = found;
    if (tl_check_string(found, cur))
        return TL_EWRONGTYPE;
    if (!found || op->parse != EXPIRE_OK)
        return TL_UPDATE_KEEP;
    if (val_copy(&op->old, cur) < 0)
        return -ENOMEM;
    switch (op->mode) {
    case GETEX_KEEP:
        return TL_UPDATE_KEEP;
    case GETEX_DELETE:
        return TL_UPDATE_DELETE;
    case GETEX_PERSIST:
        if (cur->expire_ms == 0)
            return TL_UPDATE_KEEP;
        next->expire_ms = 0;
        return TL_UPDATE_EXPIRE;
    case GETEX_SET:
        if (op->expire_ms <= tl_now_ms())
            return TL_UPDATE_DELETE;
        next->expire_ms = op->expire_ms;
        return TL_UPDATE_EXPIRE;
    }
    return TL_UPDATE_KEEP;
}

static void getex_run(struct tl_client *c, struct tl_args *a, struct getex_op *op, const char *cmd)
{
    int rc = tl_key_update(c, a->argv[1], a->len[1], getex_update, op);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
    } else if (op->found && op->parse != EXPIRE_OK) {
        reply_expire_error(c, op->parse, cmd);
    } else {
        tl_count_lookup(op->found);
        reply_maybe_val(c, op->found, &op->old);
    }
    tl_val_clear(&op->old);
}

static void cmd_getdel(struct tl_client *c, struct tl_args *a)
{
    struct getex_op op = {.mode = GETEX_DELETE};
    getex_run(c, a, &op, "getdel");
}

/* GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]. As in Redis 7.0, a missing
 * key answers nil before the expiry argument is looked at; a bad one is reported only when the
 * key exists. */
static void cmd_getex(struct tl_client *c, struct tl_args *a)
{
    struct getex_op op = {.mode = GETEX_KEEP};
    enum expire_unit unit = UNIT_S;
    enum expire_base base = BASE_RELATIVE;
    int expire_arg = 0;
    for (int j = 2; j < a->argc; j++) {
        enum expire_unit u;
        enum expire_base b;
        if (tl_arg_eq(a->argv[j], a->len[j], "persist") && op.mode != GETEX_SET) {
            op.mode = GETEX_PERSIST;
        } else if (expire_keyword(a->argv[j], a->len[j], &u, &b) && op.mode != GETEX_PERSIST &&
                   (op.mode != GETEX_SET || (u == unit && b == base)) && j + 1 < a->argc) {
            /* A repeated option counts once (the last value), as in Redis. */
            op.mode = GETEX_SET;
            unit = u;
            base = b;
            expire_arg = ++j;
        } else {
            tl_reply_syntax_error(c);
            return;
        }
    }
    if (op.mode == GETEX_KEEP) {
        cmd_get(c, a);
        return;
    }
    if (op.mode == GETEX_SET)
        op.parse = parse_expire(a->argv[expire_arg], a->len[expire_arg], unit, base, tl_now_ms(),
                                &op.expire_ms);
    getex_run(c, a, &op, "getex");
}

/* ---- MSET, MSETNX --------------------------------------------------------------------------- */

static void cmd_mset(struct tl_client *c, struct tl_args *a)
{
    if (a->argc % 2 != 1) {
        tl_reply_wrong_arity(c, "mset");
        return;
    }
    if (!pairs_fit(c, a))
        return;
    /* Each pair is one engine write; the command runs alone (TL_CMD_EXCLUSIVE), so no other
     * client sees some pairs before the others. */
    for (int j = 1; j < a->argc; j += 2) {
        int rc = tl_key_put(c, a->argv[j], a->len[j], a->argv[j + 1], a->len[j + 1], 0);
        if (rc < 0) {
            tl_reply_engine_error(c, rc);
            return;
        }
    }
    tl_reply_ok(c);
}

/* MSETNX spans keys, and the engine has no multi-key atomic write: the command runs alone
 * (TL_CMD_EXCLUSIVE), so no other client writes between the check and the writes. */
static void cmd_msetnx(struct tl_client *c, struct tl_args *a)
{
    if (a->argc % 2 != 1) {
        tl_reply_wrong_arity(c, "msetnx");
        return;
    }
    if (!pairs_fit(c, a))
        return;
    int rc = 0;
    bool any_exists = false;
    for (int j = 1; j < a->argc && !any_exists; j += 2) {
        struct tl_val v;
        rc = tl_key_get(c, a->argv[j], a->len[j], &v);
        tl_val_clear(&v);
        if (rc < 0)
            goto cleanup;
        any_exists = rc == 1;
    }
    rc = 0;
    if (any_exists)
        goto cleanup;
    for (int j = 1; j < a->argc; j += 2) {
        rc = tl_key_put(c, a->argv[j], a->len[j], a->argv[j + 1], a->len[j + 1], 0);
        if (rc < 0)
            goto cleanup;
    }
cleanup:
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, any_exists ? 0 : 1);
}

/* ---- INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT ---------------------------------------------------
 */

static void incr_by(struct tl_client *c, const char *key, size_t klen, int64_t delta)
{
    int64_t result;
    uint64_t seq = 0;
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_incr(tl_srv->db, k.p, k.len, delta, &result, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, result);
}

static void cmd_incr(struct tl_client *c, struct tl_args *a)
{
    incr_by(c, a->argv[1], a->len[1], 1);
}

static void cmd_decr(struct tl_client *c, struct tl_args *a)
{
    incr_by(c, a->argv[1], a->len[1], -1);
}

static void cmd_incrby(struct tl_client *c, struct tl_args *a)
{
    int64_t delta;
    if (tl_arg_int(c, a->argv[2], a->len[2], &delta))
        incr_by(c, a->argv[1], a->len[1], delta);
}

static void cmd_decrby(struct tl_client *c, struct tl_args *a)
{
    int64_t delta;
    if (!tl_arg_int(c, a->argv[2], a->len[2], &delta))
        return;
    if (delta == INT64_MIN) {
        tl_reply_error(c, "ERR decrement would overflow");
        return;
    }
    incr_by(c, a->argv[1], a->len[1], -delta);
}

static void cmd_incrbyfloat(struct tl_client *c, struct tl_args *a)
{
    long double delta, result;
    if (!tl_arg_float(c, a->argv[2], a->len[2], &delta))
        return;
    uint64_t seq = 0;
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, a->argv[1], a->len[1]);
    if (rc == 0)
        rc = tl_db_incr_float(tl_srv->db, k.p, k.len, delta, &result, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    char buf[TL_FLOAT_BUF];
    size_t n = tl_format_float(result, buf, sizeof buf);
    tl_reply_bulk(c, buf, n);
}

/* ---- APPEND --------------------------------------------------------------------------------- */

struct append_op {
    const char *add;
    size_t add_len;
    size_t max_len;
    bool too_long;
    char *buf; /* the new value, owned here */
    size_t len;
};

static int append_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct append_op *op = arg;
    if (tl_check_string(found, cur))
        return TL_EWRONGTYPE;
    char ibuf[INT_TEXT_BUF];
    const char *old = "";
    size_t old_len = 0;
    if (found && cur->type == TL_VAL_INT) {
        old_len = (size_t)snprintf(ibuf, sizeof ibuf, "%" PRId64, cur->i);
        old = ibuf;
    } else if (found) {
        old = cur->bytes;
        old_len = cur->len;
    }
    if (op->add_len > op->max_len || old_len > op->max_len - op->add_len) {
        op->too_long = true;
        return TL_UPDATE_KEEP;
    }
    op->len = old_len + op->add_len;
    op->buf = malloc(op->len ? op->len : 1);
    if (!op->buf)
        return -ENOMEM;
    memcpy(op->buf, old, old_len);
    memcpy(op->buf + old_len, op->add, op->add_len);
    next->type = TL_VAL_BYTES;
    next->bytes = op->buf;
    next->len = op->len;
    next->expire_ms = found ? cur->expire_ms : 0; /* APPEND keeps the expiry */
    return TL_UPDATE_PUT;
}

static void cmd_append(struct tl_client *c, struct tl_args *a)
{
    long long max_len = __atomic_load_n(&tl_srv->cfg.max_value_bytes, __ATOMIC_RELAXED);
    struct append_op op = {.add = a->argv[2], .add_len = a->len[2], .max_len = (size_t)max_len};
    int rc = tl_key_update(c, a->argv[1], a->len[1], append_update, &op);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else if (op.too_long)
        tl_reply_error(c, "ERR string exceeds maximum allowed size (max-value-bytes)");
    else
        tl_reply_int(c, (int64_t)op.len);
    free(op.buf);
}

/* ---- INCREX --------------------------------------------------------------------------------- */

/*
 * INCREX key [BYINT n | BYFLOAT f] [LBOUND lb] [UBOUND ub] [SATURATE]
 *            [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST] [ENX]
 *
 * Redis 8.8's semantics, from its documentation and observable behaviour:
 * - Without BYINT/BYFLOAT the increment is the integer 1. A missing key counts as 0.
 * - Integer mode needs an integer value ("value is not an integer or out of range"); float
 *   mode takes an integer or a float ("value is not a valid float"; an infinite stored value
 *   is an error too).
 * - Missing bounds are the type's limits (INT64 or +-LDBL_MAX); LBOUND > UBOUND is an error.
 *   Bounds are read in the mode of the increment, so they may come before BYINT/BYFLOAT.
 * - A result outside [lb, ub], or past the type's range (int64 overflow, or a long double
 *   overflow to infinity), is not applied: the reply is [current value, 0] and neither the
 *   value nor its expiry changes (a missing key stays missing). With SATURATE the result is
 *   clamped to the bound it crossed (an overflow first clamps to the type's limit), and the
 *   applied increment is new - current; an error if that difference does not fit (int64) or is
 *   infinite. A current value already outside the bounds is treated alike: the result is what
 *   is checked, so an increment that brings it back inside applies normally.
 * - When applied: EX/PX/EXAT/PXAT set the expiry (ENX: only when the key has none, a missing
 *   key having none), PERSIST removes it, no option keeps it. An expiry at or before now
 *   deletes the key (unless ENX keeps an existing expiry); the reply still reports the
 *   increment.
 * - The reply is two integers in integer mode; in float mode two bulk strings in RESP2 (the
 *   INCRBYFLOAT text form) and two doubles in RESP3.
 * - Errors: syntax error for an unknown or repeated option, BYINT with BYFLOAT, two expiry
 *   options, PERSIST with ENX, or a missing argument; ENX without an expiry, a bad increment,
 *   a bad bound and a bad expiry have their own messages (below). Options are checked for
 *   syntax first, then the numbers in the order increment, bounds, expiry.
 */

enum increx_err {
    INCREX_OK = 0,
    INCREX_NOT_INT,
    INCREX_NOT_FLOAT,
    INCREX_VALUE_INF,
    INCREX_APPLIED_OVERFLOW,
    INCREX_APPLIED_INF,
    INCREX_TOO_LONG,
};

enum increx_expire { INCREX_EXP_KEEP, INCREX_EXP_SET, INCREX_EXP_PERSIST };

struct increx_op {
    bool is_float;
    int64_t di, lbi, ubi;
    long double df, lbf, ubf;
    bool saturate;
    enum increx_expire exp;
    int64_t expire_ms;
    bool enx;
    int64_t now_ms;
    /* results */
    enum increx_err err;
    int64_t vi, ai;          /* integer mode: new (or current) value, applied increment */
    long double vf, af;      /* float mode */
    char text[TL_FLOAT_BUF]; /* float mode: the stored text */
};

/* The new expiry, given the current one (0 = none). */
static int64_t increx_expiry(const struct increx_op *op, int found, int64_t cur_expire_ms)
{
    int64_t cur = found ? cur_expire_ms : 0;
    switch (op->exp) {
    case INCREX_EXP_KEEP:
        return cur;
    case INCREX_EXP_PERSIST:
        return 0;
    case INCREX_EXP_SET:
        return op->enx && cur != 0 ? cur : op->expire_ms;
    }
    return cur;
}

/* Integer mode: decides the new value; returns false when nothing is applied. */
static bool increx_int_step(struct increx_op *op, int64_t v)
{
    int64_t r;
    bool overflow = __builtin_add_overflow(v, op->di, &r);
    if (!overflow && r >= op->lbi && r <= op->ubi) {
        op->vi = r;
        op->ai = op->di;
        return true;
    }
    if (!op->saturate) {
        op->vi = v;
        op->ai = 0;
        return false;
    }
    if (overflow)
        r = op->di > 0 ? INT64_MAX : INT64_MIN;
    if (r > op->ubi)
        r = op->ubi;
    if (r < op->lbi)
        r = op->lbi;
    if (__builtin_sub_overflow(r, v, &op->ai)) {
        op->err = INCREX_APPLIED_OVERFLOW;
        return false;
    }
    op->vi = r;
    return true;
}

/* Float mode: as increx_int_step. */
static bool increx_float_step(struct increx_op *op, long double v)
{
    long double r = v + op->df;
    bool overflow = isinf(r);
    if (!overflow && r >= op->lbf && r <= op->ubf) {
        op->vf = r;
        op->af = op->df;
        return true;
    }
    if (!op->saturate) {
        op->vf = v;
        op->af = 0;
        return false;
    }
    if (overflow)
        r = r > 0 ? LDBL_MAX : -LDBL_MAX;
    if (r > op->ubf)
        r = op->ubf;
    if (r < op->lbf)
        r = op->lbf;
    long double applied = r - v;
    if (isinf(applied)) {
        op->err = INCREX_APPLIED_INF;
        return false;
    }
    op->vf = r;
    op->af = applied;
    return true;
}

static int increx_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct increx_op *op = arg;
    if (tl_check_string(found, cur))
        return TL_EWRONGTYPE;
    bool applied;
    if (!op->is_float) {
        int64_t v = 0;
        if (found && cur->type != TL_VAL_INT) {
            op->err = INCREX_NOT_INT;
            return TL_UPDATE_KEEP;
        }
        if (found)
            v = cur->i;
        applied = increx_int_step(op, v);
    } else {
        long double v = 0;
        if (found && cur->type == TL_VAL_INT) {
            v = (long double)cur->i;
        } else if (found && !tl_parse_float(cur->bytes, cur->len, &v)) {
            op->err = INCREX_NOT_FLOAT;
            return TL_UPDATE_KEEP;
        }
        if (isinf(v)) {
            op->err = INCREX_VALUE_INF;
            return TL_UPDATE_KEEP;
        }
        applied = increx_float_step(op, v);
    }
    if (!applied)
        return TL_UPDATE_KEEP;

    int64_t expire_ms = increx_expiry(op, found, cur->expire_ms);
    if (expire_ms != 0 && expire_ms <= op->now_ms)
        return found ? TL_UPDATE_DELETE : TL_UPDATE_KEEP;
    next->expire_ms = expire_ms;
    if (!op->is_float) {
        next->type = TL_VAL_INT;
        next->i = op->vi;
        return TL_UPDATE_PUT;
    }
    size_t n = tl_format_float(op->vf, op->text, sizeof op->text);
    if (n == 0) {
        op->err = INCREX_TOO_LONG;
        return TL_UPDATE_KEEP;
    }
    next->type = TL_VAL_BYTES;
    next->bytes = op->text;
    next->len = n;
    return TL_UPDATE_PUT;
}

/* A float result as INCRBYFLOAT's text: a bulk in RESP2, a double in RESP3 with the same
 * digits (not re-rounded through a C double, which would show 0.1 as 0.10000000000000001). */
static void reply_float_text(struct tl_client *c, long double v)
{
    char buf[TL_FLOAT_BUF];
    size_t n = tl_format_float(v, buf, sizeof buf);
    tl_reply_double_text(c, buf, n);
}

/* Parses a bound in the mode of the increment; replies the error itself. */
static bool increx_bound(struct tl_client *c, const struct increx_op *op, const char *name,
                         const char *s, size_t len, int64_t *bi, long double *bf)
{
    if (!op->is_float) {
        if (tl_parse_int(s, len, bi))
            return true;
        tl_reply_errorf(c, "ERR %s is not an integer or out of range", name);
        return false;
    }
    if (tl_parse_float(s, len, bf)) {
        /* An infinite bound is no bound: the type's limit. */
        if (isinf(*bf))
            *bf = *bf > 0 ? LDBL_MAX : -LDBL_MAX;
        return true;
    }
    tl_reply_errorf(c, "ERR %s is not a valid float", name);
    return false;
}

static void cmd_increx(struct tl_client *c, struct tl_args *a)
{
    struct increx_op *op = calloc(1, sizeof *op);
    if (!op) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    int by_arg = 0, lb_arg = 0, ub_arg = 0, exp_arg = 0;
    enum expire_unit unit = UNIT_S;
    enum expire_base base = BASE_RELATIVE;

    /* Syntax: keywords, repeats, conflicts and missing arguments. */
    for (int j = 2; j < a->argc; j++) {
        const char *s = a->argv[j];
        size_t len = a->len[j];
        bool has_next = j + 1 < a->argc;
        enum expire_unit u;
        enum expire_base b;
        if ((tl_arg_eq(s, len, "byint") || tl_arg_eq(s, len, "byfloat")) && !by_arg && has_next) {
            op->is_float = tl_arg_eq(s, len, "byfloat");
            by_arg = ++j;
        } else if (tl_arg_eq(s, len, "lbound") && !lb_arg && has_next) {
            lb_arg = ++j;
        } else if (tl_arg_eq(s, len, "ubound") && !ub_arg && has_next) {
            ub_arg = ++j;
        } else if (tl_arg_eq(s, len, "saturate") && !op->saturate) {
            op->saturate = true;
        } else if (tl_arg_eq(s, len, "persist") && op->exp == INCREX_EXP_KEEP && !op->enx) {
            op->exp = INCREX_EXP_PERSIST;
        } else if (tl_arg_eq(s, len, "enx") && !op->enx && op->exp != INCREX_EXP_PERSIST) {
            op->enx = true;
        } else if (expire_keyword(s, len, &u, &b) && op->exp == INCREX_EXP_KEEP && has_next) {
            op->exp = INCREX_EXP_SET;
            unit = u;
            base = b;
            exp_arg = ++j;
        } else {
            tl_reply_syntax_error(c);
            goto cleanup;
        }
    }
    if (op->enx && op->exp != INCREX_EXP_SET) {
        tl_reply_error(c, "ERR ENX flag requires an expiration option (EX, PX, EXAT or PXAT)");
        goto cleanup;
    }

    /* The numbers. */
    op->di = 1;
    op->lbi = INT64_MIN;
    op->ubi = INT64_MAX;
    op->lbf = -LDBL_MAX;
    op->ubf = LDBL_MAX;
    if (by_arg && !op->is_float && !tl_parse_int(a->argv[by_arg], a->len[by_arg], &op->di)) {
        tl_reply_error(c, "ERR Increment is not an integer or out of range");
        goto cleanup;
    }
    if (by_arg && op->is_float) {
        if (!tl_parse_float(a->argv[by_arg], a->len[by_arg], &op->df)) {
            tl_reply_error(c, "ERR Increment is not a valid float");
            goto cleanup;
        }
        if (isinf(op->df)) {
            tl_reply_error(c, "ERR BYFLOAT increment cannot be Infinity");
            goto cleanup;
        }
    }
    if (lb_arg &&
        !increx_bound(c, op, "LBOUND", a->argv[lb_arg], a->len[lb_arg], &op->lbi, &op->lbf))
        goto cleanup;
    if (ub_arg &&
        !increx_bound(c, op, "UBOUND", a->argv[ub_arg], a->len[ub_arg], &op->ubi, &op->ubf))
        goto cleanup;
    if (op->is_float ? op->lbf > op->ubf : op->lbi > op->ubi) {
        tl_reply_error(c, "ERR LBOUND can't be greater than UBOUND");
        goto cleanup;
    }
    op->now_ms = tl_now_ms();
    if (exp_arg) {
        enum expire_parse e =
            parse_expire(a->argv[exp_arg], a->len[exp_arg], unit, base, op->now_ms, &op->expire_ms);
        if (e != EXPIRE_OK) {
            reply_expire_error(c, e, "increx");
            goto cleanup;
        }
    }

    int rc = tl_key_update(c, a->argv[1], a->len[1], increx_update, op);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        goto cleanup;
    }
    switch (op->err) {
    case INCREX_OK:
        break;
    case INCREX_NOT_INT:
        tl_reply_error(c, "ERR value is not an integer or out of range");
        goto cleanup;
    case INCREX_NOT_FLOAT:
        tl_reply_error(c, "ERR value is not a valid float");
        goto cleanup;
    case INCREX_VALUE_INF:
        tl_reply_error(c, "ERR value cannot be Infinity");
        goto cleanup;
    case INCREX_APPLIED_OVERFLOW:
        tl_reply_error(c, "ERR applied increment would overflow");
        goto cleanup;
    case INCREX_APPLIED_INF:
        tl_reply_error(c, "ERR applied increment would produce Infinity");
        goto cleanup;
    case INCREX_TOO_LONG:
        tl_reply_error(c, "ERR the result is too long to store as text");
        goto cleanup;
    }
    tl_reply_array(c, 2);
    if (op->is_float) {
        reply_float_text(c, op->vf);
        reply_float_text(c, op->af);
    } else {
        tl_reply_int(c, op->vi);
        tl_reply_int(c, op->ai);
    }
cleanup:
    free(op);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define W  TL_CMD_WRITE
#define RO TL_CMD_READONLY
#define F  TL_CMD_FAST
#define X  TL_CMD_EXCLUSIVE

const struct tl_command tl_commands_string[] = {
    {"get", 2, RO | F, 1, 1, 1, cmd_get, "string", "1.0.0", "Reads the value of a key.", "O(1)",
     "key", NULL},
    {"set", -3, W, 1, 1, 1, cmd_set, "string", "1.0.0",
     "Stores a value at a key, with optional conditions and expiry.", "O(1)",
     "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|"
     "PXAT unix-time-milliseconds|KEEPTTL]",
     NULL},
    {"setnx", 3, W | F, 1, 1, 1, cmd_setnx, "string", "1.0.0",
     "Stores a value at a key unless the key exists.", "O(1)", "key value", NULL},
    {"setex", 4, W, 1, 1, 1, cmd_setex, "string", "2.0.0",
     "Stores a value at a key with a time to live in seconds.", "O(1)", "key seconds value", NULL},
    {"psetex", 4, W, 1, 1, 1, cmd_psetex, "string", "2.6.0",
     "Stores a value at a key with a time to live in milliseconds.", "O(1)",
     "key milliseconds value", NULL},
    {"getset", 3, W | F, 1, 1, 1, cmd_getset, "string", "1.0.0",
     "Stores a new value at a key and returns the one it replaced.", "O(1)", "key value", NULL},
    {"getdel", 2, W | F, 1, 1, 1, cmd_getdel, "string", "6.2.0",
     "Returns the value of a key and deletes the key.", "O(1)", "key", NULL},
    {"getex", -2, W | F, 1, 1, 1, cmd_getex, "string", "6.2.0",
     "Returns the value of a key and optionally changes its expiry.", "O(1)",
     "key [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|"
     "PERSIST]",
     NULL},
    {"mget", -2, RO | F, 1, -1, 1, cmd_mget, "string", "1.0.0",
     "Returns the values of several keys.", "O(N) for N keys", "key [key ...]", NULL},
    {"mset", -3, W | X, 1, -1, 2, cmd_mset, "string", "1.0.1", "Stores values at several keys.",
     "O(N) for N keys", "key value [key value ...]", NULL},
    {"msetnx", -3, W | X, 1, -1, 2, cmd_msetnx, "string", "1.0.1",
     "Stores values at several keys only if none of them exists.", "O(N) for N keys",
     "key value [key value ...]", NULL},
    {"incr", 2, W | F, 1, 1, 1, cmd_incr, "string", "1.0.0",
     "Adds one to the integer at a key (a missing key counts as 0).", "O(1)", "key", NULL},
    {"decr", 2, W | F, 1, 1, 1, cmd_decr, "string", "1.0.0",
     "Subtracts one from the integer at a key (a missing key counts as 0).", "O(1)", "key", NULL},
    {"incrby", 3, W | F, 1, 1, 1, cmd_incrby, "string", "1.0.0",
     "Adds an integer to the integer at a key (a missing key counts as 0).", "O(1)",
     "key increment", NULL},
    {"decrby", 3, W | F, 1, 1, 1, cmd_decrby, "string", "1.0.0",
     "Subtracts an integer from the integer at a key (a missing key counts as 0).", "O(1)",
     "key decrement", NULL},
    {"incrbyfloat", 3, W | F, 1, 1, 1, cmd_incrbyfloat, "string", "2.6.0",
     "Adds a floating point number to the number at a key (a missing key counts as 0).", "O(1)",
     "key increment", NULL},
    {"append", 3, W | F, 1, 1, 1, cmd_append, "string", "2.0.0",
     "Adds bytes to the end of the value at a key, creating it if missing.",
     "O(N) for a value of N bytes", "key value", NULL},
    {"strlen", 2, RO | F, 1, 1, 1, cmd_strlen, "string", "2.2.0",
     "Returns the length in bytes of the value at a key.", "O(1)", "key", NULL},
    {"increx", -2, W | F, 1, 1, 1, cmd_increx, "string", "8.8.0",
     "Adds to the number at a key within optional bounds, and sets its expiry, in one step.",
     "O(1)",
     "key [BYINT increment|BYFLOAT increment] [LBOUND lowerbound] [UBOUND upperbound] "
     "[SATURATE] [EX seconds|PX milliseconds|EXAT unix-time-seconds|"
     "PXAT unix-time-milliseconds|PERSIST] [ENX]",
     NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
