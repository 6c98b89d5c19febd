/*
 * keyspace.c - SELECT's logical databases over the engine's one key space: the mapping of
 * (database, key) to an engine key and back, and the walks over one database's keys (SCAN,
 * KEYS, DBSIZE, FLUSHDB, INFO keyspace). Nothing else knows the encoding.
 *
 * Engine key of user key K in database n:
 *
 *   n = 0, K empty or K[0] != 0xFF    K itself (no copy: the common case costs nothing)
 *   n = 0, K[0] == 0xFF               0xFF 0x00 K
 *   n = 1..254                        0xFF n K
 *
 * Engine keys that start 0xFF 0xFF (TL_INTERNAL_PREFIX) are the server's own: the buckets of
 * windowed series (commands_window.c). They belong to no database, sort after all of them and
 * are never seen by a walk.
 *
 * So database 0 is the engine range [ "", "\xFF\x01" ) (its plain keys, then its escaped ones)
 * and database n is [ "\xFF" n, "\xFF" n+1 ). The databases
 * follow each other in engine order, and within one the engine order is the order of the user
 * keys (an escaped key starts with 0xFF, so it sorts after every plain key either way): a walk
 * of a database seeks to the engine key of where it starts and stops at the first key of a
 * later database.
 *
 * Decoding is the exact inverse of encoding. An engine key that no (database, key) encodes to
 * belongs to no database: a lone 0xFF, or 0xFF 0x00 followed by anything but 0xFF. Only a data
 * directory written before databases existed can hold one (a key that started with 0xFF); such a
 * key lies inside database 0's range, is skipped by every walk and is removed by FLUSHDB in
 * database 0 and by FLUSHALL.
 *
 * Every database has the same key limit, TL_MAX_USER_KEY_BYTES: the engine's less the prefix.
 *
 * A Redis Cluster mode, if Tally grows one, must compute a key's slot (CRC16 of the key or of
 * its {hash tag}) on the user key, before tl_dbkey_make: the engine key's prefix is not part of
 * the key a client hashes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define ESCAPE_BYTE 0xFF

/* Writes the engine key of (db, key) into k, with no limit on its length. */
static int dbkey_encode(struct tl_dbkey *k, int db, const char *key, size_t len)
{
    k->heap = NULL;
    if (db == 0 && (len == 0 || (unsigned char)key[0] != ESCAPE_BYTE)) {
        k->p = key;
        k->len = len;
        return 0;
    }
    char *dst = k->inline_buf;
    if (len > sizeof k->inline_buf - TL_DBKEY_PREFIX_BYTES) {
        k->heap = malloc(len + TL_DBKEY_PREFIX_BYTES);
        if (!k->heap) {
            k->p = NULL;
            k->len = 0;
            return -ENOMEM;
        }
        dst = k->heap;
    }
    dst[0] = (char)ESCAPE_BYTE;
    dst[1] = (char)(unsigned char)db;
    memcpy(dst + TL_DBKEY_PREFIX_BYTES, key, len);
    k->p = dst;
    k->len = len + TL_DBKEY_PREFIX_BYTES;
    return 0;
}

int tl_dbkey_make(struct tl_dbkey *k, int db, const char *key, size_t len)
{
    if (len > TL_MAX_USER_KEY_BYTES) {
        k->p = NULL;
        k->len = 0;
        k->heap = NULL;
        return TL_EKEYTOOLONG;
    }
    return dbkey_encode(k, db, key, len);
}

void tl_dbkey_free(struct tl_dbkey *k)
{
    free(k->heap);
    k->heap = NULL;
}

int tl_dbkey_db(const char *ekey, size_t elen)
{
    if (elen == 0 || (unsigned char)ekey[0] != ESCAPE_BYTE)
        return 0;
    if (elen < TL_DBKEY_PREFIX_BYTES)
        return -1;
    int db = (unsigned char)ekey[1];
    if (db >= TL_DATABASES_MAX)
        return TL_DATABASES_MAX; /* internal keys: after every database */
    /* Database 0 escapes only keys that start with 0xFF. */
    if (db == 0 && (elen == TL_DBKEY_PREFIX_BYTES ||
                    (unsigned char)ekey[TL_DBKEY_PREFIX_BYTES] != ESCAPE_BYTE))
        return -1;
    return db;
}

bool tl_dbkey_user(int db, const char *ekey, size_t elen, const char **key, size_t *klen)
{
    if (tl_dbkey_db(ekey, elen) != db)
        return false;
    size_t skip = elen > 0 && (unsigned char)ekey[0] == ESCAPE_BYTE ? TL_DBKEY_PREFIX_BYTES : 0;
    *key = ekey + skip;
    *klen = elen - skip;
    return true;
}

void tl_dbkey_range(int db, struct tl_dbrange *r)
{
    r->lo_len = 0;
    if (db > 0) {
        r->lo[0] = (char)ESCAPE_BYTE;
        r->lo[1] = (char)(unsigned char)db;
        r->lo_len = TL_DBKEY_PREFIX_BYTES;
    }
    /* The last database ends where the internal keys start (0xFF 0xFF). */
    r->hi[0] = (char)ESCAPE_BYTE;
    r->hi[1] = (char)(unsigned char)(db + 1);
    r->hi_len = TL_DBKEY_PREFIX_BYTES;
}

/* ---- walks ---------------------------------------------------------------------------------- */

int tl_dbiter_seek(tl_iter *it, int db, const char *key, size_t len)
{
    /* No length check: a seek to a key longer than any stored one is valid and finds the next. */
    struct tl_dbkey k;
    int rc = dbkey_encode(&k, db, key, len);
    if (rc == 0)
        rc = tl_iter_seek(it, k.p, k.len);
    tl_dbkey_free(&k);
    return rc;
}

int tl_dbiter_key(tl_iter *it, int db, const char **key, size_t *klen)
{
    while (tl_iter_valid(it)) {
        size_t elen;
        const char *ekey = tl_iter_key(it, &elen);
        int at = tl_dbkey_db(ekey, elen);
        if (at > db)
            return 0; /* the databases are in engine order: no later key is in db */
        if (at == db)
            return tl_dbkey_user(db, ekey, elen, key, klen) ? 1 : 0;
        int rc = tl_iter_next(it);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int tl_keyspace_count(tl_db *engine, int db, uint64_t *count)
{
    tl_iter *it;
    int rc = tl_iter_new(engine, &it);
    if (rc < 0)
        return rc;
    uint64_t n = 0;
    const char *key;
    size_t klen;
    rc = tl_dbiter_seek(it, db, "", 0);
    while (rc >= 0 && (rc = tl_dbiter_key(it, db, &key, &klen)) == 1) {
        n++;
        rc = tl_iter_next(it);
    }
    tl_iter_free(it);
    if (rc < 0)
        return rc;
    *count = n;
    return 0;
}

int tl_keyspace_walk(tl_db *engine, int (*fn)(void *arg, int db, tl_iter *it), void *arg)
{
    tl_iter *it;
    int rc = tl_iter_new(engine, &it);
    if (rc < 0)
        return rc;
    for (rc = tl_iter_seek(it, NULL, 0); rc == 0 && tl_iter_valid(it); rc = tl_iter_next(it)) {
        size_t elen;
        const char *ekey = tl_iter_key(it, &elen);
        int db = tl_dbkey_db(ekey, elen);
        if (db >= TL_DATABASES_MAX)
            break; /* the internal keys, after every database */
        if (db >= 0 && (rc = fn(arg, db, it)) < 0)
            break;
    }
    tl_iter_free(it);
    return rc < 0 ? rc : 0;
}

struct count_walk {
    int64_t now_ms;
    struct tl_keyspace_counts *counts;
};

static int count_key(void *arg, int db, tl_iter *it)
{
    struct count_walk *w = arg;
    struct tl_keyspace_counts *c = &w->counts[db];
    c->keys++;
    int64_t expire = tl_iter_expire_ms(it);
    if (expire > 0) {
        c->expires++;
        c->ttl_ms_sum += expire > w->now_ms ? (double)(expire - w->now_ms) : 0;
    }
    return 0;
}

int tl_keyspace_count_all(tl_db *engine, int64_t now_ms,
                          struct tl_keyspace_counts counts[TL_DATABASES_MAX])
{
    memset(counts, 0, TL_DATABASES_MAX * sizeof counts[0]);
    struct count_walk w = {now_ms, counts};
    return tl_keyspace_walk(engine, count_key, &w);
}

/* Compares an engine key with a range bound (memcmp order, a prefix first). */
static int cmp_key(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen;
}

/* Whether the engine holds any key outside db's range. */
static int keys_outside(tl_iter *it, const struct tl_dbrange *r, bool *outside)
{
    *outside = false;
    int rc = tl_iter_seek(it, NULL, 0);
    if (rc < 0)
        return rc;
    if (tl_iter_valid(it)) {
        size_t elen;
        const char *ekey = tl_iter_key(it, &elen);
        if (cmp_key(ekey, elen, r->lo, r->lo_len) < 0) {
            *outside = true;
            return 0;
        }
    }
    if (r->hi_len == 0)
        return 0;
    if ((rc = tl_iter_seek(it, r->hi, r->hi_len)) < 0)
        return rc;
    *outside = tl_iter_valid(it);
    return 0;
}

int tl_keyspace_drop_all(tl_db *engine)
{
    int rc = tl_db_drop_all(engine);
    return rc < 0 ? rc : tl_window_policies_restore(engine);
}

int tl_keyspace_flush(tl_db *engine, int db, uint64_t *seq)
{
    struct tl_dbrange r;
    tl_dbkey_range(db, &r);
    tl_iter *it;
    int rc = tl_iter_new(engine, &it);
    if (rc < 0)
        return rc;
    bool outside;
    if ((rc = keys_outside(it, &r, &outside)) < 0)
        goto cleanup;
    if (!outside) {
        /* Only this database has keys: drop them all at once, as FLUSHALL does. */
        tl_iter_free(it);
        return tl_keyspace_drop_all(engine);
    }
    /* Deleting the key under the iterator is safe: it only moves on to later keys. */
    rc = tl_iter_seek(it, r.lo, r.lo_len);
    for (; rc == 0 && tl_iter_valid(it); rc = tl_iter_next(it)) {
        size_t elen;
        const char *ekey = tl_iter_key(it, &elen);
        if (r.hi_len && cmp_key(ekey, elen, r.hi, r.hi_len) >= 0)
            break;
        uint64_t s = 0;
        rc = tl_db_delete(engine, ekey, elen, NULL, &s);
        if (s > *seq)
            *seq = s;
        if (rc < 0)
            break;
    }
cleanup:
    tl_iter_free(it);
    return rc < 0 ? rc : 0;
}

/* ---- the engine calls of the command files ------------------------------------------------ */

void tl_note_seq(struct tl_client *c, uint64_t seq)
{
    if (seq > c->wait_seq)
        c->wait_seq = seq;
}

void tl_count_lookup(bool hit)
{
    atomic_fetch_add(hit ? &tl_srv->keyspace_hits : &tl_srv->keyspace_misses, 1);
}

bool tl_key_prefetch_hash(struct tl_client *c, const char *key, size_t klen, uint64_t *hash)
{
    if (klen == 0)
        return false;
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        *hash = tl_db_prefetch_hash(k.p, k.len);
    tl_dbkey_free(&k);
    return rc == 0;
}

int tl_key_get(struct tl_client *c, const char *key, size_t klen, struct tl_val *v)
{
    struct tl_dbkey k;
    memset(v, 0, sizeof *v);
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_get(tl_srv->db, k.p, k.len, v);
    tl_dbkey_free(&k);
    return rc;
}

/* Keys tl_keys_get prepares at once (their engine keys on the stack). */
#define KEYS_GET_BATCH 16

int tl_keys_get(struct tl_client *c, char *const *keys, const size_t *lens, size_t n,
                struct tl_val *vals)
{
    for (size_t i = 0; i < n; i++)
        memset(&vals[i], 0, sizeof vals[i]);
    for (size_t at = 0; at < n; at += KEYS_GET_BATCH) {
        size_t m = n - at < KEYS_GET_BATCH ? n - at : KEYS_GET_BATCH;
        struct tl_dbkey k[KEYS_GET_BATCH];
        uint64_t hash[KEYS_GET_BATCH];
        int rc = 0;
        size_t made = 0;
        for (; made < m && rc == 0; made++) {
            rc = tl_dbkey_make(&k[made], c->db, keys[at + made], lens[at + made]);
            if (rc == 0)
                hash[made] = tl_db_prefetch_hash(k[made].p, k[made].len);
        }
        for (int stage = TL_PREFETCH_SLOT; stage <= TL_PREFETCH_VALUE && rc == 0; stage++)
            for (size_t i = 0; i < m; i++)
                tl_db_prefetch(tl_srv->db, hash[i], (enum tl_prefetch_stage)stage);
        for (size_t i = 0; i < m && rc == 0; i++) {
            rc = tl_db_get_hashed(tl_srv->db, k[i].p, k[i].len, hash[i], &vals[at + i]);
            rc = rc < 0 ? rc : 0;
        }
        for (size_t i = 0; i < made; i++)
            tl_dbkey_free(&k[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const char *tl_type_name(const struct tl_val *v)
{
    if (v->type != TL_VAL_TYPED)
        return "string";
    switch (v->tag) {
    case TL_TAG_WINDOW:
        return "window";
    case TL_TAG_WSKETCH:
        return "window-sketch";
    case TL_TAG_WHLL:
        return "window-hll";
    case TL_TAG_THROTTLE:
        return "ratelimit";
    }
    return "unknown";
}

int tl_key_get_string(struct tl_client *c, const char *key, size_t klen, struct tl_val *v)
{
    int rc = tl_key_get(c, key, klen, v);
    if (rc == 1 && v->type == TL_VAL_TYPED) {
        tl_val_clear(v);
        return TL_EWRONGTYPE;
    }
    return rc;
}

int tl_key_put(struct tl_client *c, const char *key, size_t klen, const char *val, size_t vlen,
               int64_t expire_ms)
{
    struct tl_dbkey k;
    uint64_t seq = 0;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_put(tl_srv->db, k.p, k.len, val, vlen, expire_ms, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    return rc;
}

int tl_key_delete(struct tl_client *c, const char *key, size_t klen, bool *existed)
{
    struct tl_dbkey k;
    uint64_t seq = 0;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_delete(tl_srv->db, k.p, k.len, existed, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    return rc;
}

int tl_key_update(struct tl_client *c, const char *key, size_t klen, tl_update_fn fn, void *arg)
{
    struct tl_dbkey k;
    uint64_t seq = 0;
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_update(tl_srv->db, k.p, k.len, fn, arg, &seq);
    tl_dbkey_free(&k);
    tl_note_seq(c, seq);
    return rc;
}
