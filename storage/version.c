/*
 * version.c - versions (immutable pictures of the layers), the tables in them, and their
 * reference counts. See db_impl.h for the scheme.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coding.h"
#include "db_impl.h"
#include "error.h"

void tl_sst_file_path(char *buf, size_t cap, const char *dir, uint64_t number)
{
    snprintf(buf, cap, "%s/%06llu.sst", dir, (unsigned long long)number);
}

struct tl_version *tl_version_new(void)
{
    return calloc(1, sizeof(struct tl_version));
}

struct tl_version *tl_version_clone(const struct tl_version *v)
{
    struct tl_version *c = tl_version_new();
    if (!c)
        return NULL;
    c->active = v->active;
    if (c->active)
        c->active->refs++;
    c->n_imm = v->n_imm;
    for (int i = 0; i < v->n_imm; i++) {
        c->imm[i] = v->imm[i];
        c->imm[i]->refs++;
    }
    for (int l = 0; l < TL_MAX_LEVELS; l++) {
        if (!v->n_files[l])
            continue;
        c->levels[l] = malloc(sizeof(struct tl_table *) * v->n_files[l]);
        if (!c->levels[l]) {
            /* Undo the references taken so far; the caller sees NULL. */
            for (int k = 0; k < l; k++)
                for (size_t i = 0; i < c->n_files[k]; i++)
                    c->levels[k][i]->refs--;
            c->active->refs--;
            for (int i = 0; i < c->n_imm; i++)
                c->imm[i]->refs--;
            for (int k = 0; k < l; k++)
                free(c->levels[k]);
            free(c);
            return NULL;
        }
        c->n_files[l] = v->n_files[l];
        for (size_t i = 0; i < v->n_files[l]; i++) {
            c->levels[l][i] = v->levels[l][i];
            c->levels[l][i]->refs++;
        }
    }
    return c;
}

void tl_db_delete_file_locked(struct tl_db *db, const char *path)
{
    if (db->pinned > 0) {
        if (db->n_pending_deletes == db->cap_pending_deletes) {
            size_t cap = db->cap_pending_deletes ? db->cap_pending_deletes * 2 : 16;
            char **p = realloc(db->pending_deletes, cap * sizeof *p);
            if (!p)
                return; /* the file stays; it is removed as an orphan at the next open */
            db->pending_deletes = p;
            db->cap_pending_deletes = cap;
        }
        char *copy = strdup(path);
        if (copy)
            db->pending_deletes[db->n_pending_deletes++] = copy;
        return;
    }
    unlink(path);
}

void tl_table_unref_locked(struct tl_db *db, struct tl_table *t)
{
    if (--t->refs > 0)
        return;
    char path[4096];
    tl_sst_file_path(path, sizeof path, db->dir, t->meta.number);
    tl_sst_close(t->sst);
    if (t->obsolete)
        tl_db_delete_file_locked(db, path);
    tl_file_meta_free(&t->meta);
    free(t);
}

static void memtable_unref_locked(struct tl_db *db, struct tl_memtable *m)
{
    if (--m->refs > 0)
        return;
    /* Back to the pool: a memtable is never freed while the database is open. */
    if (m != atomic_load(&db->active))
        tl_memtable_reset(m);
}

void tl_version_unref_locked(struct tl_db *db, struct tl_version *v)
{
    if (--v->refs > 0)
        return;
    if (v->active)
        memtable_unref_locked(db, v->active);
    for (int i = 0; i < v->n_imm; i++)
        memtable_unref_locked(db, v->imm[i]);
    for (int l = 0; l < TL_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->n_files[l]; i++)
            tl_table_unref_locked(db, v->levels[l][i]);
        free(v->levels[l]);
    }
    free(v);
}

void tl_version_install(struct tl_db *db, struct tl_version *v)
{
    v->refs++;
    struct tl_version *old = db->current;
    db->current = v;
    atomic_store(&db->l0_files, v->n_files[0]);
    if (old)
        tl_version_unref_locked(db, old);
}

struct tl_version *tl_version_acquire(struct tl_db *db)
{
    pthread_mutex_lock(&db->mutex);
    struct tl_version *v = db->current;
    v->refs++;
    pthread_mutex_unlock(&db->mutex);
    return v;
}

void tl_version_release(struct tl_db *db, struct tl_version *v)
{
    pthread_mutex_lock(&db->mutex);
    tl_version_unref_locked(db, v);
    pthread_mutex_unlock(&db->mutex);
}

int tl_table_open(struct tl_db *db, const struct tl_file_meta *meta, struct tl_table **out)
{
    struct tl_table *t = calloc(1, sizeof *t);
    if (!t)
        return tl_error(-ENOMEM, "out of memory opening table %06llu",
                        (unsigned long long)meta->number);
    int rc = tl_file_meta_copy(&t->meta, meta);
    if (rc < 0) {
        free(t);
        return rc;
    }
    char path[4096];
    tl_sst_file_path(path, sizeof path, db->dir, meta->number);
    rc = tl_sst_open(path, meta->number, db->cache, &t->sst);
    if (rc < 0) {
        tl_file_meta_free(&t->meta);
        free(t);
        return rc;
    }
    t->refs = 0;
    *out = t;
    return 0;
}

static int cmp_smallest(const void *a, const void *b)
{
    const struct tl_table *x = *(struct tl_table *const *)a, *y = *(struct tl_table *const *)b;
    return tl_key_cmp(x->meta.smallest, x->meta.smallest_len, y->meta.smallest,
                      y->meta.smallest_len);
}

static int cmp_newest(const void *a, const void *b)
{
    const struct tl_table *x = *(struct tl_table *const *)a, *y = *(struct tl_table *const *)b;
    return x->meta.number < y->meta.number ? 1 : x->meta.number > y->meta.number ? -1 : 0;
}

int tl_version_apply(struct tl_db *db, struct tl_version *v, const struct tl_version_edit *e)
{
    for (size_t d = 0; d < e->n_deleted; d++) {
        int l = e->deleted[d].level;
        for (size_t i = 0; i < v->n_files[l]; i++) {
            struct tl_table *t = v->levels[l][i];
            if (t->meta.number != e->deleted[d].number)
                continue;
            t->obsolete = true;
            tl_table_unref_locked(db, t);
            memmove(&v->levels[l][i], &v->levels[l][i + 1],
                    (v->n_files[l] - i - 1) * sizeof(struct tl_table *));
            v->n_files[l]--;
            break;
        }
    }
    for (size_t a = 0; a < e->n_added; a++) {
        const struct tl_file_meta *meta = &e->added[a];
        int l = meta->level;
        if (l < 0 || l >= TL_MAX_LEVELS)
            return tl_error(TL_ECORRUPT, "%s: the manifest puts table %06llu in level %d", db->dir,
                            (unsigned long long)meta->number, l);
        struct tl_table *t;
        int rc = tl_table_open(db, meta, &t);
        if (rc < 0)
            return rc;
        struct tl_table **grown =
            realloc(v->levels[l], (v->n_files[l] + 1) * sizeof(struct tl_table *));
        if (!grown) {
            tl_sst_close(t->sst);
            tl_file_meta_free(&t->meta);
            free(t);
            return tl_error(-ENOMEM, "out of memory adding a table to level %d", l);
        }
        v->levels[l] = grown;
        t->refs = 1;
        v->levels[l][v->n_files[l]++] = t;
    }
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        if (v->n_files[l] > 1)
            qsort(v->levels[l], v->n_files[l], sizeof(struct tl_table *),
                  l == 0 ? cmp_newest : cmp_smallest);
    return 0;
}

ssize_t tl_level_find(const struct tl_version *v, int level, const void *key, size_t klen)
{
    size_t lo = 0, hi = v->n_files[level];
    struct tl_table **f = v->levels[level];
    /* The first file whose largest key is >= key. */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tl_key_cmp(f[mid]->meta.largest, f[mid]->meta.largest_len, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->n_files[level])
        return -1;
    if (tl_key_cmp(f[lo]->meta.smallest, f[lo]->meta.smallest_len, key, klen) > 0)
        return -1;
    return (ssize_t)lo;
}

uint64_t tl_level_bytes(const struct tl_version *v, int level)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < v->n_files[level]; i++)
        sum += v->levels[level][i]->meta.size_bytes;
    return sum;
}
