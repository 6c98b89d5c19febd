/*
 * commands_keys.c - commands on keys of any type: DEL, UNLINK, EXISTS, TYPE, the EXPIRE family
 * (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX XX GT LT), TTL, PTTL, EXPIRETIME, PEXPIRETIME,
 * PERSIST, SCAN, KEYS, DBSIZE, FLUSHALL and FLUSHDB, with Redis 7's replies and errors.
 *
 * Expiry changes that depend on the current one (NX XX GT LT, PERSIST) are decided inside a
 * tl_db_update() callback, atomically with other writes of the key. As in Redis, an expiry time
 * at or before now deletes the key.
 *
 * SCAN: the engine iterates keys in sorted order, so a scan's position is the last key it
 * examined. Keys are up to 64 KiB and a cursor is a number, so the server keeps a table of
 * cursor -> last key (tl_srv->scan_cursors, under tl_srv->scan_lock). Each page that is not the
 * last gets a new cursor; entries never change once made and the oldest is evicted when the
 * table holds cfg.scan_cursors of them, so a client may repeat a page while its cursor lives.
 * Cursor numbers are consecutive from a random start, which makes lookup an index into a ring
 * and makes cursors from before a restart unknown. An unknown cursor (evicted, or from before a
 * restart) answers an empty page with cursor 0: the scan ends early rather than restarting or
 * returning keys twice. Redis's SCAN guarantee (every key present for the whole scan is
 * returned) holds for scans whose cursors are not evicted between pages.
 *
 * Databases (keyspace.c): every engine call takes the engine key of the client's database, and
 * SCAN, KEYS, DBSIZE and FLUSHDB walk only that database's range, in user key order. A cursor
 * holds a user key, so a scan continues in whatever database the client has selected.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "server.h"

#define MS_PER_S           1000
#define SCAN_DEFAULT_COUNT 10
/* Cursor numbers start at a random point in [2^32, 2^52): far from 0, distinct across
 * restarts, and exact in clients that hold numbers as doubles. */
#define SCAN_ID_MIN     (UINT64_C(1) << 32)
#define SCAN_ID_SPAN    ((UINT64_C(1) << 52) - SCAN_ID_MIN)
#define UINT64_TEXT_BUF 24

/* ---- shared helpers ------------------------------------------------------------------------ */

/* Looks up key's expiry in the client's database: 1 when it exists (with *expire_ms, 0 for
 * none), 0 when it does not, or a negative error. */
static int key_expiry(struct tl_client *c, const char *key, size_t klen, int64_t *expire_ms)
{
    struct tl_val v = {0};
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_get(tl_srv->db, k.p, k.len, &v);
    tl_dbkey_free(&k);
    *expire_ms = rc == 1 ? v.expire_ms : 0;
    tl_val_clear(&v);
    return rc;
}

/* ---- DEL, UNLINK, EXISTS, TYPE -------------------------------------------------------------- */

static void cmd_del(struct tl_client *c, struct tl_args *a)
{
    int64_t deleted = 0;
    for (int j = 1; j < a->argc; j++) {
        bool existed = false;
        uint64_t seq = 0;
        struct tl_dbkey k;
        int rc = tl_dbkey_make(&k, c->db, a->argv[j], a->len[j]);
        if (rc == 0)
            rc = tl_db_delete(tl_srv->db, k.p, k.len, &existed, &seq);
        tl_dbkey_free(&k);
        tl_note_seq(c, seq);
        if (rc < 0) {
            tl_reply_engine_error(c, rc);
            return;
        }
        deleted += existed;
    }
    tl_reply_int(c, deleted);
}

/* Counts every argument that names an existing key, repeats included, as Redis does. */
static void cmd_exists(struct tl_client *c, struct tl_args *a)
{
    int64_t n = 0;
    for (int j = 1; j < a->argc; j++) {
        int64_t expire_ms;
        int rc = key_expiry(c, a->argv[j], a->len[j], &expire_ms);
        if (rc < 0) {
            tl_reply_engine_error(c, rc);
            return;
        }
        tl_count_lookup(rc == 1);
        n += rc;
    }
    tl_reply_int(c, n);
}

static void cmd_type(struct tl_client *c, struct tl_args *a)
{
    struct tl_val v;
    int rc = tl_key_get(c, a->argv[1], a->len[1], &v);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    tl_count_lookup(rc == 1);
    tl_reply_status(c, rc == 1 ? tl_type_name(&v) : "none");
    tl_val_clear(&v);
}

/* ---- EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST ------------------------------------------ */

enum expire_flag {
    EXPIRE_NX = 1 << 0, /* only when the key has no expiry */
    EXPIRE_XX = 1 << 1, /* only when it has one */
    EXPIRE_GT = 1 << 2, /* only when the new time is later (no expiry counts as infinite) */
    EXPIRE_LT = 1 << 3, /* only when the new time is earlier */
};

struct expire_op {
    unsigned flags;
    int64_t when_ms; /* absolute */
    int64_t now_ms;
    bool changed;
};

static int expire_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct expire_op *op = arg;
    if (!found)
        return TL_UPDATE_KEEP;
    int64_t cur_ms = cur->expire_ms;
    if ((op->flags & EXPIRE_NX) && cur_ms != 0)
        return TL_UPDATE_KEEP;
    if ((op->flags & EXPIRE_XX) && cur_ms == 0)
        return TL_UPDATE_KEEP;
    if ((op->flags & EXPIRE_GT) && (cur_ms == 0 || op->when_ms <= cur_ms))
        return TL_UPDATE_KEEP;
    if ((op->flags & EXPIRE_LT) && cur_ms != 0 && op->when_ms >= cur_ms)
        return TL_UPDATE_KEEP;
    op->changed = true;
    if (op->when_ms <= op->now_ms)
        return TL_UPDATE_DELETE;
    next->expire_ms = op->when_ms;
    return TL_UPDATE_EXPIRE;
}

/* EXPIRE key seconds [NX|XX|GT|LT] and its relatives. unit_ms is 1 or 1000; absolute tells
 * whether the number is a unix time or a time from now. */
static void expire_generic(struct tl_client *c, struct tl_args *a, int64_t unit_ms, bool absolute,
                           const char *cmd)
{
    struct expire_op op = {0};
    for (int j = 3; j < a->argc; j++) {
        if (tl_arg_eq(a->argv[j], a->len[j], "nx")) {
            op.flags |= EXPIRE_NX;
        } else if (tl_arg_eq(a->argv[j], a->len[j], "xx")) {
            op.flags |= EXPIRE_XX;
        } else if (tl_arg_eq(a->argv[j], a->len[j], "gt")) {
            op.flags |= EXPIRE_GT;
        } else if (tl_arg_eq(a->argv[j], a->len[j], "lt")) {
            op.flags |= EXPIRE_LT;
        } else {
            tl_reply_errorf(c, "ERR Unsupported option %.*s", (int)a->len[j], a->argv[j]);
            return;
        }
    }
    if ((op.flags & EXPIRE_NX) && (op.flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT))) {
        tl_reply_error(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if ((op.flags & EXPIRE_GT) && (op.flags & EXPIRE_LT)) {
        tl_reply_error(c, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    int64_t when;
    if (!tl_arg_int(c, a->argv[2], a->len[2], &when))
        return;
    op.now_ms = tl_now_ms();
    /* Redis's overflow rules: the conversion to ms, then the addition of now. Negative and
     * zero times are valid: they delete the key. */
    if (unit_ms != 1 && (when > INT64_MAX / unit_ms || when < INT64_MIN / unit_ms))
        goto invalid;
    when *= unit_ms;
    if (!absolute) {
        if (when > INT64_MAX - op.now_ms)
            goto invalid;
        when += op.now_ms;
    }
    op.when_ms = when;

    int rc = tl_key_update(c, a->argv[1], a->len[1], expire_update, &op);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, op.changed ? 1 : 0);
    return;
invalid:
    tl_reply_errorf(c, "ERR invalid expire time in '%s' command", cmd);
}

static void cmd_expire(struct tl_client *c, struct tl_args *a)
{
    expire_generic(c, a, MS_PER_S, false, "expire");
}

static void cmd_pexpire(struct tl_client *c, struct tl_args *a)
{
    expire_generic(c, a, 1, false, "pexpire");
}

static void cmd_expireat(struct tl_client *c, struct tl_args *a)
{
    expire_generic(c, a, MS_PER_S, true, "expireat");
}

static void cmd_pexpireat(struct tl_client *c, struct tl_args *a)
{
    expire_generic(c, a, 1, true, "pexpireat");
}

static int persist_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    bool *changed = arg;
    if (!found || cur->expire_ms == 0)
        return TL_UPDATE_KEEP;
    *changed = true;
    next->expire_ms = 0;
    return TL_UPDATE_EXPIRE;
}

static void cmd_persist(struct tl_client *c, struct tl_args *a)
{
    bool changed = false;
    int rc = tl_key_update(c, a->argv[1], a->len[1], persist_update, &changed);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, changed ? 1 : 0);
}

/* ---- TTL, PTTL, EXPIRETIME, PEXPIRETIME ----------------------------------------------------- */

/* -2 for a missing key, -1 for no expiry; else the time left (relative) or the expiry time
 * (absolute), in ms or in seconds rounded to the nearest, as Redis rounds. */
static void ttl_generic(struct tl_client *c, struct tl_args *a, bool in_ms, bool absolute)
{
    int64_t expire_ms;
    int rc = key_expiry(c, a->argv[1], a->len[1], &expire_ms);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    tl_count_lookup(rc == 1);
    if (rc == 0) {
        tl_reply_int(c, -2);
        return;
    }
    if (expire_ms == 0) {
        tl_reply_int(c, -1);
        return;
    }
    int64_t v = expire_ms;
    if (!absolute) {
        v = expire_ms - tl_now_ms();
        if (v < 0)
            v = 0;
    }
    /* Rounded without adding first: v may be as large as INT64_MAX (PEXPIREAT's limit). */
    tl_reply_int(c, in_ms ? v : v / MS_PER_S + (v % MS_PER_S >= MS_PER_S / 2));
}

static void cmd_ttl(struct tl_client *c, struct tl_args *a)
{
    ttl_generic(c, a, false, false);
}

static void cmd_pttl(struct tl_client *c, struct tl_args *a)
{
    ttl_generic(c, a, true, false);
}

static void cmd_expiretime(struct tl_client *c, struct tl_args *a)
{
    ttl_generic(c, a, false, true);
}

static void cmd_pexpiretime(struct tl_client *c, struct tl_args *a)
{
    ttl_generic(c, a, true, true);
}

/* ---- matching keys: shared by SCAN and KEYS ---------------------------------------------------
 */

/* The keys a page or a KEYS reply returns: their bytes end to end, and their lengths. */
struct key_list {
    struct tl_buf bytes;
    size_t *lens;
    size_t n, cap;
};

static int key_list_add(struct key_list *l, const void *key, size_t klen)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        size_t *lens = realloc(l->lens, cap * sizeof *lens);
        if (!lens)
            return -ENOMEM;
        l->lens = lens;
        l->cap = cap;
    }
    int rc = tl_buf_append(&l->bytes, key, klen);
    if (rc < 0)
        return rc;
    l->lens[l->n++] = klen;
    return 0;
}

static void key_list_reply(struct tl_client *c, const struct key_list *l)
{
    tl_reply_array(c, l->n);
    size_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        tl_reply_bulk(c, l->bytes.data + off, l->lens[i]);
        off += l->lens[i];
    }
}

static void key_list_free(struct key_list *l)
{
    tl_buf_free(&l->bytes);
    free(l->lens);
}

/* The bytes every key matching pat must start with: the pattern up to its first special
 * character. The iterator can seek there and stop past them. */
static size_t literal_prefix(const char *pat, size_t plen)
{
    size_t i = 0;
    while (i < plen && pat[i] != '*' && pat[i] != '?' && pat[i] != '[' && pat[i] != '\\')
        i++;
    return i;
}

/* Compares key with the first plen bytes of prefix: <0, 0 (key starts with it) or >0. */
static int cmp_prefix(const void *key, size_t klen, const char *prefix, size_t plen)
{
    size_t n = klen < plen ? klen : plen;
    int r = memcmp(key, prefix, n);
    if (r != 0)
        return r;
    return klen < plen ? -1 : 0;
}

/* ---- KEYS ----------------------------------------------------------------------------------- */

static void cmd_keys(struct tl_client *c, struct tl_args *a)
{
    const char *pat = a->argv[1];
    size_t plen = a->len[1];
    size_t prefix_len = literal_prefix(pat, plen);
    bool match_all = plen == 1 && pat[0] == '*';
    struct key_list list = {0};
    tl_iter *it = NULL;
    int rc = tl_iter_new(tl_srv->db, &it);
    if (rc < 0)
        goto cleanup;
    const char *key;
    size_t klen;
    rc = tl_dbiter_seek(it, c->db, pat, prefix_len);
    while (rc >= 0 && (rc = tl_dbiter_key(it, c->db, &key, &klen)) == 1) {
        if (cmp_prefix(key, klen, pat, prefix_len) > 0)
            break; /* sorted: no later key has the prefix */
        if (match_all || tl_glob_match(pat, plen, key, klen, false)) {
            if ((rc = key_list_add(&list, key, klen)) < 0)
                goto cleanup;
        }
        rc = tl_iter_next(it);
    }
    if (rc < 0)
        goto cleanup;
    key_list_reply(c, &list);
cleanup:
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    if (it)
        tl_iter_free(it);
    key_list_free(&list);
}

/* ---- SCAN ----------------------------------------------------------------------------------- */

struct scan_cursor {
    char *key; /* the last key the page examined */
    size_t klen;
};

/* A ring of cursors; the oldest, at head, has number first_id, the next has first_id + 1, ... */
struct scan_table {
    struct scan_cursor *ring;
    size_t cap, n, head;
    uint64_t first_id;
};

static uint64_t random_start_id(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint64_t)tl_now_ms() * UINT64_C(0x9E3779B97F4A7C15);
    return SCAN_ID_MIN + r % SCAN_ID_SPAN;
}

/* The table, made on first use with room for cfg.scan_cursors entries. Call with scan_lock. */
static struct scan_table *scan_table_get(void)
{
    if (tl_srv->scan_cursors)
        return tl_srv->scan_cursors;
    struct scan_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    int cap = __atomic_load_n(&tl_srv->cfg.scan_cursors, __ATOMIC_RELAXED);
    t->cap = cap > 0 ? (size_t)cap : 1;
    t->ring = calloc(t->cap, sizeof *t->ring);
    if (!t->ring) {
        free(t);
        return NULL;
    }
    t->first_id = random_start_id();
    tl_srv->scan_cursors = t;
    return t;
}

/* Copies the key of cursor id into *key (malloc'd). Returns 1, 0 when the cursor is unknown,
 * or -ENOMEM. */
static int scan_cursor_find(uint64_t id, char **key, size_t *klen)
{
    int rc = 0;
    pthread_mutex_lock(&tl_srv->scan_lock);
    struct scan_table *t = scan_table_get();
    if (!t) {
        rc = -ENOMEM;
        goto cleanup;
    }
    if (id < t->first_id || id - t->first_id >= t->n)
        goto cleanup;
    const struct scan_cursor *sc = &t->ring[(t->head + (id - t->first_id)) % t->cap];
    *key = malloc(sc->klen ? sc->klen : 1);
    if (!*key) {
        rc = -ENOMEM;
        goto cleanup;
    }
    memcpy(*key, sc->key, sc->klen);
    *klen = sc->klen;
    rc = 1;
cleanup:
    pthread_mutex_unlock(&tl_srv->scan_lock);
    return rc;
}

/* Adds a cursor for a scan that stopped after key (whose buffer the table takes). Returns 0
 * with its number in *id, or -ENOMEM (and frees key). */
static int scan_cursor_add(char *key, size_t klen, uint64_t *id)
{
    int rc = 0;
    pthread_mutex_lock(&tl_srv->scan_lock);
    struct scan_table *t = scan_table_get();
    if (!t) {
        free(key);
        rc = -ENOMEM;
        goto cleanup;
    }
    if (t->n == t->cap) { /* evict the oldest */
        free(t->ring[t->head].key);
        t->ring[t->head].key = NULL;
        t->head = (t->head + 1) % t->cap;
        t->first_id++;
        t->n--;
    }
    struct scan_cursor *sc = &t->ring[(t->head + t->n) % t->cap];
    sc->key = key;
    sc->klen = klen;
    *id = t->first_id + t->n;
    t->n++;
cleanup:
    pthread_mutex_unlock(&tl_srv->scan_lock);
    return rc;
}

/* A cursor is an unsigned 64-bit decimal number, read as Redis reads it (with strtoul): an
 * empty cursor is 0, a sign may lead, and "-N" wraps around (-1 is the largest cursor). */
static bool parse_cursor(const char *s, size_t len, uint64_t *out)
{
    bool negative = len > 0 && s[0] == '-';
    size_t i = len > 0 && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i == 1 && len == 1)
        return false; /* a sign without digits */
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = negative ? 0 - v : v;
    return true;
}

struct scan_page {
    const char *pat; /* NULL: every key */
    size_t plen, prefix_len;
    const char *type; /* TYPE's argument (NUL-terminated), or NULL: every type */
    size_t type_len;
    int64_t count; /* keys to examine */
    /* results */
    struct key_list keys;
    bool done;
    char *last; /* malloc'd; the last key examined */
    size_t last_len;
};

/* Examines up to page->count keys of database db, from the first one after `after` when resume
 * is set, else from its first key. */
static int scan_run(struct scan_page *page, int db, const char *after, size_t after_len,
                    bool resume)
{
    tl_iter *it = NULL;
    int rc = tl_iter_new(tl_srv->db, &it);
    if (rc < 0)
        return rc;
    const char *start = after;
    size_t start_len = resume ? after_len : 0;
    /* Keys before the pattern's literal prefix cannot match: start at the prefix. */
    if (page->pat && cmp_prefix(start, start_len, page->pat, page->prefix_len) < 0) {
        start = page->pat;
        start_len = page->prefix_len;
    }
    int64_t examined = 0;
    const char *key;
    size_t klen;
    bool more = false; /* a key that may match follows the page */
    rc = tl_dbiter_seek(it, db, start, start_len);
    while (rc >= 0 && (rc = tl_dbiter_key(it, db, &key, &klen)) == 1) {
        if (page->pat && cmp_prefix(key, klen, page->pat, page->prefix_len) > 0)
            break; /* sorted: no later key has the prefix */
        if (examined == page->count) {
            more = true;
            break;
        }
        if (!(resume && klen == after_len && memcmp(key, after, klen) == 0)) {
            examined++;
            bool match = !page->pat || tl_glob_match(page->pat, page->plen, key, klen, false);
            if (match && page->type) {
                struct tl_val v;
                if ((rc = tl_iter_value(it, &v)) < 0)
                    goto cleanup;
                const char *name = tl_type_name(&v);
                match = strlen(name) == page->type_len &&
                        strncasecmp(name, page->type, page->type_len) == 0;
                tl_val_clear(&v);
            }
            if (match) {
                if ((rc = key_list_add(&page->keys, key, klen)) < 0)
                    goto cleanup;
            }
            char *last = realloc(page->last, klen ? klen : 1);
            if (!last) {
                rc = -ENOMEM;
                goto cleanup;
            }
            memcpy(last, key, klen);
            page->last = last;
            page->last_len = klen;
        }
        rc = tl_iter_next(it);
    }
    if (rc < 0)
        goto cleanup;
    rc = 0;
    page->done = !more;
cleanup:
    tl_iter_free(it);
    return rc;
}

/* SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] */
static void cmd_scan(struct tl_client *c, struct tl_args *a)
{
    uint64_t cursor;
    if (!parse_cursor(a->argv[1], a->len[1], &cursor)) {
        tl_reply_error(c, "ERR invalid cursor");
        return;
    }
    struct scan_page page = {.count = SCAN_DEFAULT_COUNT};
    for (int j = 2; j < a->argc; j++) {
        bool has_next = j + 1 < a->argc;
        if (tl_arg_eq(a->argv[j], a->len[j], "count") && has_next) {
            if (!tl_arg_int(c, a->argv[j + 1], a->len[j + 1], &page.count))
                return;
            if (page.count < 1) {
                tl_reply_syntax_error(c);
                return;
            }
            j++;
        } else if (tl_arg_eq(a->argv[j], a->len[j], "match") && has_next) {
            page.pat = a->argv[j + 1];
            page.plen = a->len[j + 1];
            j++;
        } else if (tl_arg_eq(a->argv[j], a->len[j], "type") && has_next) {
            /* An unknown type name matches no key (Redis 7.0 does not reject it either). */
            page.type = a->argv[j + 1];
            page.type_len = a->len[j + 1];
            j++;
        } else {
            tl_reply_syntax_error(c);
            return;
        }
    }
    if (page.pat && page.plen == 1 && page.pat[0] == '*')
        page.pat = NULL;
    if (page.pat)
        page.prefix_len = literal_prefix(page.pat, page.plen);

    char *after = NULL;
    size_t after_len = 0;
    int rc = 0;
    if (cursor != 0) {
        rc = scan_cursor_find(cursor, &after, &after_len);
        if (rc < 0)
            goto cleanup;
        if (rc == 0) { /* unknown: end the scan (see the top of the file) */
            page.done = true;
            goto reply;
        }
    }
    if ((rc = scan_run(&page, c->db, after ? after : "", after_len, cursor != 0)) < 0)
        goto cleanup;
reply:;
    uint64_t next_id = 0;
    if (!page.done && page.last) {
        rc = scan_cursor_add(page.last, page.last_len, &next_id);
        page.last = NULL;
        if (rc < 0)
            goto cleanup;
    }
    char text[UINT64_TEXT_BUF];
    int n = snprintf(text, sizeof text, "%" PRIu64, next_id);
    tl_reply_array(c, 2);
    tl_reply_bulk(c, text, (size_t)n);
    key_list_reply(c, &page.keys);
cleanup:
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    free(after);
    free(page.last);
    key_list_free(&page.keys);
}

/* ---- DBSIZE, FLUSHALL, FLUSHDB -------------------------------------------------------------- */

/* Counts the keys of the client's database by walking them: O(keys), as tl_db_count_keys. */
static void cmd_dbsize(struct tl_client *c, struct tl_args *a)
{
    uint64_t n = 0;
    int rc = tl_keyspace_count(tl_srv->db, c->db, &n);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_int(c, (int64_t)n);
}

/* FLUSHALL's and FLUSHDB's optional argument; ASYNC runs synchronously (nothing is freed in
 * the background). Replies the syntax error itself. */
static bool flush_args_ok(struct tl_client *c, struct tl_args *a)
{
    if (a->argc > 2 || (a->argc == 2 && !tl_arg_eq(a->argv[1], a->len[1], "async") &&
                        !tl_arg_eq(a->argv[1], a->len[1], "sync"))) {
        tl_reply_syntax_error(c);
        return false;
    }
    return true;
}

/* FLUSHALL [ASYNC|SYNC]: every database. The drop is one manifest edit, durable when
 * tl_db_drop_all returns: no WAL sequence to wait for. */
static void cmd_flushall(struct tl_client *c, struct tl_args *a)
{
    if (!flush_args_ok(c, a))
        return;
    tl_watch_flushing(-1, false);
    int rc = tl_keyspace_drop_all(tl_srv->db);
    tl_watch_flushing(-1, true);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_ok(c);
}

/* FLUSHDB [ASYNC|SYNC]: the client's database. It runs alone (TL_CMD_EXCLUSIVE): no client
 * sees the database half emptied, and none writes another database between tl_keyspace_flush's
 * check that only this one has keys and its drop of everything. Otherwise the keys are deleted
 * one by one, O(keys), and the reply waits for the last delete's WAL record. */
static void cmd_flushdb(struct tl_client *c, struct tl_args *a)
{
    if (!flush_args_ok(c, a))
        return;
    tl_watch_flushing(c->db, false);
    uint64_t seq = 0;
    int rc = tl_keyspace_flush(tl_srv->db, c->db, &seq);
    tl_watch_flushing(c->db, true);
    tl_note_seq(c, seq);
    if (rc < 0)
        tl_reply_engine_error(c, rc);
    else
        tl_reply_ok(c);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define W  TL_CMD_WRITE
#define RO TL_CMD_READONLY
#define F  TL_CMD_FAST
#define X  TL_CMD_EXCLUSIVE

#define EXPIRE_ARGS_DOC(t) "key " t " [NX|XX|GT|LT]"

/* ---- MEMORY USAGE --------------------------------------------------------------------------- */

/* What a key takes in a memtable (storage/memtable.h): a 32-byte cell and its key, rounded to 8
 * bytes, a slot of 8 bytes at three quarters load, and a value that is not an integer beside
 * it with its 4-byte length, rounded to 8. */
#define MEM_CELL_BYTES   32
#define MEM_SLOT_BYTES   11
#define MEM_ALIGN(n)     (((n) + 7) & ~(size_t)7)
#define MEM_VALUE_HEADER 4

/* MEMORY USAGE key [SAMPLES count]: an estimate of the bytes the key takes while it is in a
 * memtable (on disk only, its share of a compressed table is smaller); for a windowed series,
 * its head (the buckets past the newest two of each resolution are keys of their own). */
static void memory_usage(struct tl_client *c, struct tl_args *a)
{
    for (int i = 3; i < a->argc; i += 2) {
        int64_t samples;
        if (!tl_arg_eq(a->argv[i], a->len[i], "samples") || i + 1 >= a->argc) {
            tl_reply_syntax_error(c);
            return;
        }
        if (!tl_arg_int(c, a->argv[i + 1], a->len[i + 1], &samples))
            return;
        if (samples < 0) {
            tl_reply_syntax_error(c);
            return;
        }
    }
    struct tl_val v;
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, a->argv[2], a->len[2]);
    size_t klen = k.len;
    if (rc == 0)
        rc = tl_db_get(tl_srv->db, k.p, k.len, &v);
    tl_dbkey_free(&k);
    if (rc < 0) {
        tl_reply_engine_error(c, rc);
        return;
    }
    if (rc == 0) {
        tl_reply_null(c);
        return;
    }
    size_t bytes = MEM_ALIGN(MEM_CELL_BYTES + klen) + MEM_SLOT_BYTES;
    if (v.type != TL_VAL_INT)
        bytes += MEM_ALIGN(MEM_VALUE_HEADER + v.len);
    tl_val_clear(&v);
    tl_reply_int(c, (int64_t)bytes);
}

static void memory_help(struct tl_client *c, struct tl_args *a)
{
    (void)a;
    static const char *const lines[] = {
        "USAGE <key> [SAMPLES <count>]",
        "    An estimate of the bytes <key> takes in a memtable (SAMPLES is accepted and not",
        "    needed).",
        NULL,
    };
    tl_reply_help(c, "MEMORY", lines);
}

static const struct tl_command memory_subcommands[] = {
    {"usage", -3, RO, 2, 2, 1, memory_usage, "server", "4.0.0",
     "Estimates the memory usage of a key.", "O(1)", "key [SAMPLES count]", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, memory_help, "server", "4.0.0",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_memory(struct tl_client *c, struct tl_args *a)
{
    tl_run_subcommand(c, a, "memory", memory_subcommands);
}

const struct tl_command tl_commands_keys[] = {
    {"memory", -2, 0, 0, 0, 0, cmd_memory, "server", "4.0.0",
     "A container for memory diagnostics commands.", "Depends on subcommand.", "",
     memory_subcommands},
    {"del", -2, W, 1, -1, 1, cmd_del, "generic", "1.0.0", "Deletes keys.", "O(N) for N keys",
     "key [key ...]", NULL},
    {"unlink", -2, W | F, 1, -1, 1, cmd_del, "generic", "4.0.0",
     "Deletes keys (the same as DEL here: nothing is freed in the background).", "O(N) for N keys",
     "key [key ...]", NULL},
    {"exists", -2, RO | F, 1, -1, 1, cmd_exists, "generic", "1.0.0",
     "Counts how many of the given keys exist, repeats included.", "O(N) for N keys",
     "key [key ...]", NULL},
    {"type", 2, RO | F, 1, 1, 1, cmd_type, "generic", "1.0.0",
     "Returns the type of the value at a key.", "O(1)", "key", NULL},
    {"expire", -3, W | F, 1, 1, 1, cmd_expire, "generic", "1.0.0",
     "Sets a key's time to live in seconds.", "O(1)", EXPIRE_ARGS_DOC("seconds"), NULL},
    {"pexpire", -3, W | F, 1, 1, 1, cmd_pexpire, "generic", "2.6.0",
     "Sets a key's time to live in milliseconds.", "O(1)", EXPIRE_ARGS_DOC("milliseconds"), NULL},
    {"expireat", -3, W | F, 1, 1, 1, cmd_expireat, "generic", "1.2.0",
     "Sets the unix time in seconds at which a key expires.", "O(1)",
     EXPIRE_ARGS_DOC("unix-time-seconds"), NULL},
    {"pexpireat", -3, W | F, 1, 1, 1, cmd_pexpireat, "generic", "2.6.0",
     "Sets the unix time in milliseconds at which a key expires.", "O(1)",
     EXPIRE_ARGS_DOC("unix-time-milliseconds"), NULL},
    {"persist", 2, W | F, 1, 1, 1, cmd_persist, "generic", "2.2.0", "Removes the expiry of a key.",
     "O(1)", "key", NULL},
    {"ttl", 2, RO | F, 1, 1, 1, cmd_ttl, "generic", "1.0.0",
     "Returns a key's time to live in seconds.", "O(1)", "key", NULL},
    {"pttl", 2, RO | F, 1, 1, 1, cmd_pttl, "generic", "2.6.0",
     "Returns a key's time to live in milliseconds.", "O(1)", "key", NULL},
    {"expiretime", 2, RO | F, 1, 1, 1, cmd_expiretime, "generic", "7.0.0",
     "Returns the unix time in seconds at which a key expires.", "O(1)", "key", NULL},
    {"pexpiretime", 2, RO | F, 1, 1, 1, cmd_pexpiretime, "generic", "7.0.0",
     "Returns the unix time in milliseconds at which a key expires.", "O(1)", "key", NULL},
    {"scan", -2, RO, 0, 0, 0, cmd_scan, "generic", "2.8.0",
     "Iterates over the keys, a page at a time.",
     "O(1) for every call. O(N) for a complete iteration over N keys.",
     "cursor [MATCH pattern] [COUNT count] [TYPE type]", NULL},
    {"keys", 2, RO, 0, 0, 0, cmd_keys, "generic", "1.0.0",
     "Returns every key that matches a glob pattern.", "O(N) for N keys in the database", "pattern",
     NULL},
    {"dbsize", 1, RO | F, 0, 0, 0, cmd_dbsize, "server", "1.0.0",
     "Returns the number of keys in the selected database.", "O(N) for N keys (they are counted)",
     "", NULL},
    {"flushall", -1, W | X, 0, 0, 0, cmd_flushall, "server", "1.0.0",
     "Deletes every key of every database.", "O(1) in the number of keys: whole files are dropped",
     "[ASYNC|SYNC]", NULL},
    {"flushdb", -1, W | X, 0, 0, 0, cmd_flushdb, "server", "1.0.0",
     "Deletes every key of the selected database.",
     "O(1) when no other database has keys (whole files are dropped), else O(N) for its N keys",
     "[ASYNC|SYNC]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
