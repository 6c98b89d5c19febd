/*
 * iterator.c - sources in key order (a table, a level of tables, a memtable), the merger that
 * folds them key by key, and the public sorted iterator built on it. Compaction uses the same
 * sources and merger.
 *
 * A memtable is a hash table, so its source gathers its keys in sorted batches: the smallest
 * TL_MEM_BATCH keys past the last one returned, then twice as many, and so on. A short scan
 * (SCAN with a COUNT) costs one pass over the table; a full scan costs a pass per doubling.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "db_impl.h"
#include "error.h"

#define TL_MEM_BATCH 64
/* A batch never grows past this many cells (bounds the memory of one source). */
#define TL_MEM_BATCH_MAX (1u << 20)

/* ---- one table ---------------------------------------------------------------------------- */

struct table_source {
    struct tl_source base;
    struct tl_sst_iter *it;
    struct tl_sst *sst;
};

static int ts_seek(struct tl_source *s, const void *key, size_t klen)
{
    return tl_sst_iter_seek(((struct table_source *)s)->it, key, klen);
}

static int ts_next(struct tl_source *s)
{
    return tl_sst_iter_next(((struct table_source *)s)->it);
}

static bool ts_valid(struct tl_source *s)
{
    return tl_sst_iter_valid(((struct table_source *)s)->it);
}

static const uint8_t *ts_key(struct tl_source *s, size_t *klen)
{
    return tl_sst_iter_key(((struct table_source *)s)->it, klen);
}

static int decode_entry(struct tl_sst *sst, const uint8_t *val, size_t vlen, struct tl_record *r)
{
    if (tl_record_decode(val, vlen, r) < 0)
        return tl_error(TL_ECORRUPT, "%s: an entry does not decode; run tallyctl verify",
                        tl_sst_path(sst));
    return 0;
}

static int ts_record(struct tl_source *s, struct tl_record *r)
{
    struct table_source *ts = (struct table_source *)s;
    size_t vlen;
    const uint8_t *val = tl_sst_iter_value(ts->it, &vlen);
    return decode_entry(ts->sst, val, vlen, r);
}

static void ts_free(struct tl_source *s)
{
    struct table_source *ts = (struct table_source *)s;
    tl_sst_iter_free(ts->it);
    free(ts);
}

struct tl_source *tl_source_table(struct tl_table *t, bool fill_cache)
{
    struct table_source *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    if (tl_sst_iter_new(t->sst, fill_cache, &ts->it) < 0) {
        free(ts);
        return NULL;
    }
    ts->sst = t->sst;
    ts->base = (struct tl_source){ts_seek, ts_next, ts_valid, ts_key, ts_record, ts_free};
    return &ts->base;
}

/* ---- a level of non-overlapping tables ---------------------------------------------------- */

struct level_source {
    struct tl_source base;
    struct tl_table **tables;
    size_t n, cur;
    bool fill_cache;
    struct tl_sst_iter *it;
};

/* Opens table i positioned at key (or its first entry), moving on past empty results. */
static int ls_open_from(struct level_source *ls, size_t i, const void *key, size_t klen)
{
    for (; i < ls->n; i++) {
        tl_sst_iter_free(ls->it);
        ls->it = NULL;
        int rc = tl_sst_iter_new(ls->tables[i]->sst, ls->fill_cache, &ls->it);
        if (rc < 0)
            return rc;
        ls->cur = i;
        rc = tl_sst_iter_seek(ls->it, key, klen);
        if (rc < 0)
            return rc;
        if (tl_sst_iter_valid(ls->it))
            return 0;
        key = NULL;
        klen = 0;
    }
    ls->cur = ls->n;
    return 0;
}

static int ls_seek(struct tl_source *s, const void *key, size_t klen)
{
    struct level_source *ls = (struct level_source *)s;
    size_t lo = 0, hi = ls->n;
    if (key) {
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            const struct tl_file_meta *m = &ls->tables[mid]->meta;
            if (tl_key_cmp(m->largest, m->largest_len, key, klen) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return ls_open_from(ls, lo, key, klen);
}

static int ls_next(struct tl_source *s)
{
    struct level_source *ls = (struct level_source *)s;
    int rc = tl_sst_iter_next(ls->it);
    if (rc < 0 || tl_sst_iter_valid(ls->it))
        return rc;
    return ls_open_from(ls, ls->cur + 1, NULL, 0);
}

static bool ls_valid(struct tl_source *s)
{
    struct level_source *ls = (struct level_source *)s;
    return ls->cur < ls->n && ls->it && tl_sst_iter_valid(ls->it);
}

static const uint8_t *ls_key(struct tl_source *s, size_t *klen)
{
    return tl_sst_iter_key(((struct level_source *)s)->it, klen);
}

static int ls_record(struct tl_source *s, struct tl_record *r)
{
    struct level_source *ls = (struct level_source *)s;
    size_t vlen;
    const uint8_t *val = tl_sst_iter_value(ls->it, &vlen);
    return decode_entry(ls->tables[ls->cur]->sst, val, vlen, r);
}

static void ls_free(struct tl_source *s)
{
    struct level_source *ls = (struct level_source *)s;
    tl_sst_iter_free(ls->it);
    free(ls);
}

struct tl_source *tl_source_level(struct tl_table **tables, size_t n, bool fill_cache)
{
    struct level_source *ls = calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    ls->tables = tables;
    ls->n = n;
    ls->cur = n;
    ls->fill_cache = fill_cache;
    ls->base = (struct tl_source){ls_seek, ls_next, ls_valid, ls_key, ls_record, ls_free};
    return &ls->base;
}

/* ---- a memtable --------------------------------------------------------------------------- */

struct mem_source {
    struct tl_source base;
    struct tl_memtable *m;
    struct tl_cell **batch;
    size_t n, pos, batch_max;
    bool more;            /* the last batch was full: there may be more keys past it */
    struct tl_cell *last; /* the last cell collected (kept or not): where the next batch starts */
    struct tl_cell_snap snap; /* of the current cell: ms_record's bytes may point into it */
};

/* Collects the next batch of cells, leaving out blind-merge placeholders (they say nothing). */
static int ms_fill(struct mem_source *ms, const void *key, size_t klen, bool inclusive)
{
    for (;;) {
        size_t want = ms->batch_max;
        size_t got = tl_memtable_collect(ms->m, key, klen, inclusive, ms->batch, want);
        ms->pos = 0;
        ms->more = got == want;
        ms->last = got ? ms->batch[got - 1] : NULL;
        ms->n = 0;
        for (size_t i = 0; i < got; i++) {
            struct tl_cell_snap snap;
            tl_cell_read(ms->m, ms->batch[i], &snap);
            if (!tl_cell_is_placeholder(&snap))
                ms->batch[ms->n++] = ms->batch[i];
        }
        if (ms->batch_max < TL_MEM_BATCH_MAX) {
            struct tl_cell **grown = realloc(ms->batch, sizeof *grown * ms->batch_max * 2);
            if (grown) {
                ms->batch = grown;
                ms->batch_max *= 2;
            }
        }
        if (ms->n > 0 || !ms->more)
            return 0;
        key = ms->last->key;
        klen = ms->last->klen;
        inclusive = false;
    }
}

static int ms_seek(struct tl_source *s, const void *key, size_t klen)
{
    return ms_fill((struct mem_source *)s, key, klen, true);
}

static int ms_next(struct tl_source *s)
{
    struct mem_source *ms = (struct mem_source *)s;
    if (++ms->pos < ms->n || !ms->more)
        return 0;
    return ms_fill(ms, ms->last->key, ms->last->klen, false);
}

static bool ms_valid(struct tl_source *s)
{
    struct mem_source *ms = (struct mem_source *)s;
    return ms->pos < ms->n;
}

static const uint8_t *ms_key(struct tl_source *s, size_t *klen)
{
    struct mem_source *ms = (struct mem_source *)s;
    *klen = ms->batch[ms->pos]->klen;
    return ms->batch[ms->pos]->key;
}

static int ms_record(struct tl_source *s, struct tl_record *r)
{
    struct mem_source *ms = (struct mem_source *)s;
    tl_cell_read(ms->m, ms->batch[ms->pos], &ms->snap);
    tl_cell_snap_to_record(&ms->snap, r);
    return 0;
}

static void ms_free(struct tl_source *s)
{
    struct mem_source *ms = (struct mem_source *)s;
    free(ms->batch);
    free(ms);
}

struct tl_source *tl_source_memtable(struct tl_memtable *m, bool frozen)
{
    struct mem_source *ms = calloc(1, sizeof *ms);
    if (!ms)
        return NULL;
    /* A frozen table does not change: gather it in one batch. */
    size_t entries = (size_t)atomic_load(&m->entries);
    ms->batch_max = frozen ? (entries ? entries : 1) : TL_MEM_BATCH;
    ms->batch = malloc(sizeof *ms->batch * ms->batch_max);
    if (!ms->batch) {
        free(ms);
        return NULL;
    }
    ms->m = m;
    ms->base = (struct tl_source){ms_seek, ms_next, ms_valid, ms_key, ms_record, ms_free};
    return &ms->base;
}

/* ---- the merger --------------------------------------------------------------------------- */

int tl_merger_init(struct tl_merger *mg, struct tl_source **src, size_t n)
{
    memset(mg, 0, sizeof *mg);
    mg->src = src;
    mg->n = n;
    mg->at_key = calloc(n ? n : 1, sizeof *mg->at_key);
    if (!mg->at_key)
        return tl_error(-ENOMEM, "out of memory for an iterator over %zu sources", n);
    return 0;
}

/* Finds the smallest key among the sources and folds their records for it, newest first. */
static int merger_settle(struct tl_merger *mg)
{
    mg->valid = false;
    mg->key = NULL;
    for (size_t i = 0; i < mg->n; i++) {
        mg->at_key[i] = false;
        if (!mg->src[i]->valid(mg->src[i]))
            continue;
        size_t klen;
        const uint8_t *k = mg->src[i]->key(mg->src[i], &klen);
        if (!mg->key || tl_key_cmp(k, klen, mg->key, mg->klen) < 0) {
            mg->key = k;
            mg->klen = klen;
        }
    }
    if (!mg->key)
        return 0;
    tl_fold_init(&mg->fold);
    for (size_t i = 0; i < mg->n; i++) {
        if (!mg->src[i]->valid(mg->src[i]))
            continue;
        size_t klen;
        const uint8_t *k = mg->src[i]->key(mg->src[i], &klen);
        if (tl_key_cmp(k, klen, mg->key, mg->klen) != 0)
            continue;
        mg->at_key[i] = true;
        struct tl_record r;
        int rc = mg->src[i]->record(mg->src[i], &r);
        if (rc < 0)
            return mg->status = rc;
        tl_fold_add(&mg->fold, &r);
    }
    mg->valid = true;
    return 0;
}

int tl_merger_seek(struct tl_merger *mg, const void *key, size_t klen)
{
    for (size_t i = 0; i < mg->n; i++) {
        int rc = mg->src[i]->seek(mg->src[i], key, klen);
        if (rc < 0)
            return mg->status = rc;
    }
    return merger_settle(mg);
}

int tl_merger_next(struct tl_merger *mg)
{
    for (size_t i = 0; i < mg->n; i++) {
        if (!mg->at_key[i])
            continue;
        int rc = mg->src[i]->next(mg->src[i]);
        if (rc < 0)
            return mg->status = rc;
    }
    return merger_settle(mg);
}

void tl_merger_free(struct tl_merger *mg)
{
    for (size_t i = 0; i < mg->n; i++)
        if (mg->src[i])
            mg->src[i]->free(mg->src[i]);
    free(mg->src);
    free(mg->at_key);
    mg->src = NULL;
    mg->n = 0;
}

/* ---- the public iterator ------------------------------------------------------------------ */

struct tl_iter {
    struct tl_db *db;
    struct tl_version *v;
    struct tl_merger mg;
    struct tl_record cur;
    int status;
};

int tl_iter_new(tl_db *db, tl_iter **out)
{
    struct tl_iter *it = calloc(1, sizeof *it);
    if (!it)
        return tl_error(-ENOMEM, "out of memory for an iterator");
    it->db = db;
    it->v = tl_version_acquire(db);
    struct tl_version *v = it->v;
    size_t n = 1 + (size_t)v->n_imm + v->n_files[0] + TL_MAX_LEVELS;
    struct tl_source **src = calloc(n, sizeof *src);
    size_t k = 0;
    int rc = 0;
    if (!src) {
        rc = tl_error(-ENOMEM, "out of memory for an iterator");
        goto fail;
    }
    /* Newest first: the active memtable, the frozen ones, L0 newest first, then each level. */
    src[k++] = tl_source_memtable(v->active, false);
    for (int i = 0; i < v->n_imm; i++)
        src[k++] = tl_source_memtable(v->imm[i], true);
    for (size_t i = 0; i < v->n_files[0]; i++)
        src[k++] = tl_source_table(v->levels[0][i], true);
    for (int l = 1; l < TL_MAX_LEVELS; l++)
        if (v->n_files[l])
            src[k++] = tl_source_level(v->levels[l], v->n_files[l], true);
    for (size_t i = 0; i < k; i++)
        if (!src[i])
            rc = tl_error(-ENOMEM, "out of memory for an iterator");
    if (rc == 0)
        rc = tl_merger_init(&it->mg, src, k);
    if (rc < 0) {
        for (size_t i = 0; i < k; i++)
            if (src[i])
                src[i]->free(src[i]);
        free(src);
        goto fail;
    }
    *out = it;
    return 0;
fail:
    tl_version_release(db, it->v);
    free(it);
    return rc;
}

/* Moves forward to a key that exists now (not deleted, not expired). */
static int iter_skip_absent(struct tl_iter *it)
{
    int64_t now = tl_db_now_ms(it->db);
    while (it->mg.valid) {
        int rc = tl_fold_result(&it->mg.fold, true, now, &it->cur);
        if (rc < 0)
            return it->status = tl_error(TL_ECORRUPT,
                                         "%s: an increment is stored over a byte "
                                         "value; run tallyctl verify",
                                         it->db->dir);
        if (it->cur.kind != TL_KIND_DELETE)
            return 0;
        if ((rc = tl_merger_next(&it->mg)) < 0)
            return it->status = rc;
    }
    return it->mg.status;
}

int tl_iter_seek(tl_iter *it, const void *key, size_t klen)
{
    int rc = tl_merger_seek(&it->mg, klen ? key : NULL, klen);
    if (rc < 0)
        return it->status = rc;
    return iter_skip_absent(it);
}

bool tl_iter_valid(const tl_iter *it)
{
    return it->status == 0 && it->mg.valid;
}

int tl_iter_next(tl_iter *it)
{
    if (!tl_iter_valid(it))
        return it->status;
    int rc = tl_merger_next(&it->mg);
    if (rc < 0)
        return it->status = rc;
    return iter_skip_absent(it);
}

const void *tl_iter_key(const tl_iter *it, size_t *klen)
{
    *klen = it->mg.klen;
    return it->mg.key;
}

int tl_iter_value(const tl_iter *it, struct tl_val *out)
{
    int rc = tl_record_to_val(&it->cur, out);
    return rc < 0 ? rc : 0;
}

int64_t tl_iter_expire_ms(const tl_iter *it)
{
    return it->cur.has_expiry ? it->cur.expire_ms : 0;
}

void tl_iter_free(tl_iter *it)
{
    if (!it)
        return;
    tl_merger_free(&it->mg);
    tl_version_release(it->db, it->v);
    free(it);
}
