/*
 * compaction.c - leveled compaction in one background thread.
 *
 * Picking (db->mutex held): each level gets a score - L0 its file count over
 * l0_compaction_trigger, level n its bytes over its target (level1_bytes x multiplier^(n-1)).
 * The highest score of at least 1 is compacted: all of L0 with the overlapping L1 tables, or
 * one table of level n (round-robin over the key space) with the overlapping tables of n+1.
 * With nothing over its target, a table whose entries mostly carry an expiry that has passed
 * (median expiry in the past) is compacted so its space comes back without a manual compaction.
 *
 * Running (no lock held): the inputs are merged newest first (tl_merger), each key's records
 * folded into one: increments added up, shadowed values dropped. Where no deeper level can
 * hold the key ("bottom"), deletes and expired values are dropped as well; elsewhere an expired
 * value becomes a tombstone. Output is cut into tables of target_file_bytes; the inputs are
 * replaced by the outputs in one manifest edit.
 *
 * A manual compaction (tl_db_compact_range) takes every table overlapping the range, in every
 * level, widened until no table straddles its edge, and writes them to the deepest level.
 * Restricted to one level (tl_db_compact_level), it takes that level's tables overlapping the
 * range, widened the same way within the level, and the overlapping tables of the next level,
 * and writes them to the next level. Either may report progress: input bytes merged so far,
 * estimated from the entries merged (each input's entry count is in its metadata).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coding.h"
#include "db_impl.h"
#include "error.h"
#include "hash.h"

struct compaction {
    int out_level;
    bool all_bottom;          /* output at the deepest level: every key is at the bottom */
    struct tl_table **inputs; /* newest first */
    size_t n_inputs;
    int *input_levels;
    int pointer_level;       /* level whose round-robin pointer moves, or -1 */
    tl_progress_fn progress; /* manual compactions only; may be NULL */
    void *progress_arg;
};

/* How often run_compaction reports progress, in input entries merged. */
#define TL_COMPACTION_PROGRESS_ENTRIES 4096

/* A manual compaction's request, passed to the compaction thread in db->manual_*: a level
 * (-1: every level) and a progress callback, besides the key range. */
struct manual_request {
    int level;
    tl_progress_fn progress;
    void *progress_arg;
};

static uint64_t level_target(const struct tl_db *db, int level)
{
    uint64_t t = db->opt.level1_bytes;
    for (int l = 1; l < level; l++)
        t *= (uint64_t)db->opt.level_multiplier;
    return t;
}

static int deepest_level(const struct tl_version *v, int num_levels)
{
    for (int l = num_levels - 1; l > 0; l--)
        if (v->n_files[l])
            return l;
    return 0;
}

enum tl_compression tl_level_compression(const struct tl_db *db, int level, int deepest)
{
    return level > deepest - db->opt.bottom_levels ? db->opt.bottom_compression
                                                   : db->opt.compression;
}

static bool overlaps(const struct tl_file_meta *m, const uint8_t *lo, size_t lolen,
                     const uint8_t *hi, size_t hilen)
{
    if (lo && tl_key_cmp(m->largest, m->largest_len, lo, lolen) < 0)
        return false;
    if (hi && tl_key_cmp(m->smallest, m->smallest_len, hi, hilen) > 0)
        return false;
    return true;
}

static int add_input(struct compaction *c, struct tl_table *t, int level)
{
    struct tl_table **ni = realloc(c->inputs, (c->n_inputs + 1) * sizeof *ni);
    if (!ni)
        return -ENOMEM;
    c->inputs = ni;
    int *nl = realloc(c->input_levels, (c->n_inputs + 1) * sizeof *nl);
    if (!nl)
        return -ENOMEM;
    c->input_levels = nl;
    t->refs++;
    c->inputs[c->n_inputs] = t;
    c->input_levels[c->n_inputs++] = level;
    return 0;
}

/* The key range covered by the inputs chosen so far (pointers into their metadata). */
static void input_range(const struct compaction *c, const uint8_t **lo, size_t *lolen,
                        const uint8_t **hi, size_t *hilen)
{
    *lo = *hi = NULL;
    for (size_t i = 0; i < c->n_inputs; i++) {
        const struct tl_file_meta *m = &c->inputs[i]->meta;
        if (!*lo || tl_key_cmp(m->smallest, m->smallest_len, *lo, *lolen) < 0) {
            *lo = m->smallest;
            *lolen = m->smallest_len;
        }
        if (!*hi || tl_key_cmp(m->largest, m->largest_len, *hi, *hilen) > 0) {
            *hi = m->largest;
            *hilen = m->largest_len;
        }
    }
}

static bool is_input(const struct compaction *c, const struct tl_table *t)
{
    for (size_t i = 0; i < c->n_inputs; i++)
        if (c->inputs[i] == t)
            return true;
    return false;
}

/* Adds the tables of level that overlap the inputs' range. */
static int add_overlapping(struct compaction *c, const struct tl_version *v, int level)
{
    const uint8_t *lo, *hi;
    size_t lolen = 0, hilen = 0;
    input_range(c, &lo, &lolen, &hi, &hilen);
    for (size_t i = 0; i < v->n_files[level]; i++) {
        struct tl_table *t = v->levels[level][i];
        if (!is_input(c, t) && overlaps(&t->meta, lo, lolen, hi, hilen)) {
            int rc = add_input(c, t, level);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void compaction_release_locked(struct tl_db *db, struct compaction *c)
{
    for (size_t i = 0; i < c->n_inputs; i++)
        tl_table_unref_locked(db, c->inputs[i]);
    free(c->inputs);
    free(c->input_levels);
    memset(c, 0, sizeof *c);
}

/* Chooses the next automatic compaction (db->mutex held). Returns 1 if one was chosen. */
static int pick_compaction(struct tl_db *db, struct compaction *c)
{
    struct tl_version *v = db->current;
    int nl = db->opt.num_levels;
    double best = 0;
    int level = -1;
    if (v->n_files[0] > 0) {
        best = (double)v->n_files[0] / db->opt.l0_compaction_trigger;
        level = 0;
    }
    for (int l = 1; l < nl - 1; l++) {
        double score = (double)tl_level_bytes(v, l) / (double)level_target(db, l);
        if (score > best) {
            best = score;
            level = l;
        }
    }
    memset(c, 0, sizeof *c);
    c->pointer_level = -1;
    int rc = 0;
    if (best >= 1.0 && level == 0) {
        for (size_t i = 0; i < v->n_files[0] && rc == 0; i++)
            rc = add_input(c, v->levels[0][i], 0);
        if (rc == 0)
            rc = add_overlapping(c, v, 1);
        c->out_level = 1;
    } else if (best >= 1.0) {
        /* The first table past the level's round-robin pointer. */
        size_t pick = 0;
        const uint8_t *ptr = db->level_pointer[level];
        for (size_t i = 0; ptr && i < v->n_files[level]; i++) {
            const struct tl_file_meta *m = &v->levels[level][i]->meta;
            if (tl_key_cmp(m->smallest, m->smallest_len, ptr, db->level_pointer_len[level]) > 0) {
                pick = i;
                break;
            }
        }
        rc = add_input(c, v->levels[level][pick], level);
        if (rc == 0)
            rc = add_overlapping(c, v, level + 1);
        c->out_level = level + 1;
        c->pointer_level = level;
    } else {
        /* No level over its target: look for a table that is mostly expired. */
        int64_t now = tl_db_now_ms(db);
        for (int l = 0; l < nl && c->n_inputs == 0 && rc == 0; l++) {
            for (size_t i = 0; i < v->n_files[l]; i++) {
                const struct tl_file_meta *m = &v->levels[l][i]->meta;
                if (m->expiring_entries * 2 < m->entries || m->expire_p50_ms == 0 ||
                    m->expire_p50_ms >= now)
                    continue;
                if (l == 0) {
                    for (size_t k = 0; k < v->n_files[0] && rc == 0; k++)
                        rc = add_input(c, v->levels[0][k], 0);
                    if (rc == 0)
                        rc = add_overlapping(c, v, 1);
                    c->out_level = 1;
                } else {
                    rc = add_input(c, v->levels[l][i], l);
                    c->out_level = l == nl - 1 ? l : l + 1;
                    if (rc == 0 && l < nl - 1)
                        rc = add_overlapping(c, v, l + 1);
                }
                break;
            }
        }
        if (c->n_inputs == 0 && rc == 0)
            return 0;
    }
    if (rc < 0) {
        compaction_release_locked(db, c);
        return tl_error(rc, "out of memory picking a compaction");
    }
    c->all_bottom = c->out_level == nl - 1;
    return 1;
}

/*
 * Whether a layer newer than the compaction's inputs may hold a record of key: a memtable, or a
 * table above the output level that is not an input. An expired value may be dropped (or
 * turned into a tombstone) only when none does: a newer EXPIRE may have extended it, and a
 * newer increment counts from it, so without it they would read as a live key.
 */
static bool newer_may_hold(const struct tl_version *v, const struct compaction *c,
                           const uint8_t *key, size_t klen)
{
    uint64_t hash = tl_hash64(key, klen);
    for (int i = -1; i < v->n_imm; i++) {
        struct tl_memtable *m = i < 0 ? v->active : v->imm[i];
        if (m && tl_memtable_find(m, key, klen, hash))
            return true;
    }
    for (int l = 0; l < c->out_level; l++) {
        for (size_t i = 0; i < v->n_files[l]; i++) {
            struct tl_table *t = v->levels[l][i];
            if (is_input(c, t) ||
                tl_key_cmp(key, klen, t->meta.smallest, t->meta.smallest_len) < 0 ||
                tl_key_cmp(key, klen, t->meta.largest, t->meta.largest_len) > 0)
                continue;
            if (tl_sst_may_contain(t->sst, hash))
                return true;
        }
    }
    return false;
}

/* Whether a level deeper than out_level may hold key. */
static bool deeper_may_hold(const struct tl_version *v, int out_level, int num_levels,
                            const uint8_t *key, size_t klen)
{
    for (int l = out_level + 1; l < num_levels; l++)
        if (tl_level_find(v, l, key, klen) >= 0)
            return true;
    return false;
}

struct output {
    struct tl_db *db;
    struct compaction *c;
    struct tl_sst_builder *b;
    uint64_t number;
    struct tl_version_edit *edit;
    enum tl_compression compression;
    uint64_t written;
};

static int output_finish(struct output *o)
{
    if (!o->b)
        return 0;
    struct tl_sst_props props;
    int rc = tl_sst_builder_finish(o->b, &props);
    o->b = NULL;
    if (rc < 0)
        return rc;
    struct tl_file_meta meta = {
        .level = o->c->out_level,
        .number = o->number,
        .size_bytes = props.file_size,
        .entries = props.entries,
        .raw_bytes = props.raw_key_bytes + props.raw_value_bytes,
        .smallest = props.smallest,
        .smallest_len = props.smallest_len,
        .largest = props.largest,
        .largest_len = props.largest_len,
        .expiring_entries = props.expiring_entries,
        .expire_p50_ms = props.expire_p50_ms,
    };
    o->written += props.file_size;
    rc = tl_edit_add_file(o->edit, &meta);
    tl_sst_props_free(&props);
    return rc;
}

static int output_add(struct output *o, const uint8_t *key, size_t klen, const uint8_t *val,
                      size_t vlen)
{
    struct tl_db *db = o->db;
    if (o->b && tl_sst_builder_size(o->b) >= db->opt.target_file_bytes) {
        int rc = output_finish(o);
        if (rc < 0)
            return rc;
    }
    if (!o->b) {
        pthread_mutex_lock(&db->mutex);
        o->number = db->next_file++;
        pthread_mutex_unlock(&db->mutex);
        char path[4096];
        tl_sst_file_path(path, sizeof path, db->dir, o->number);
        struct tl_sst_builder_options bo = {
            .block_size_bytes = db->opt.block_size_bytes,
            .bloom_bits_per_key = db->opt.bloom_bits_per_key,
            .compression = o->compression,
            .zstd_level = db->opt.zstd_level,
        };
        int rc = tl_sst_builder_new(path, &bo, &o->b);
        if (rc < 0)
            return rc;
    }
    return tl_sst_builder_add(o->b, key, klen, val, vlen);
}

/* Merges the inputs into new tables and installs them. */
static int run_compaction(struct tl_db *db, struct compaction *c)
{
    struct tl_version_edit edit;
    tl_edit_init(&edit);
    struct tl_merger mg = {0};
    /* The clock is read before the version is taken, so the version holds every record
     * written before now: a key expired by now can get no newer increment or EXPIRE. */
    int64_t now = tl_db_now_ms(db);
    struct tl_version *v = tl_version_acquire(db);
    int nl = db->opt.num_levels;
    int deepest = deepest_level(v, nl);
    if (c->out_level > deepest)
        deepest = c->out_level;
    struct output o = {.db = db,
                       .c = c,
                       .edit = &edit,
                       .compression = tl_level_compression(db, c->out_level, deepest)};
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t read_bytes = 0, dropped = 0, total_entries = 0, merged_entries = 0;
    bool logged = false;
    int rc = 0;

    /* Sources newest first: inputs are ordered L0 newest first, then by level. */
    struct tl_source **src = calloc(c->n_inputs ? c->n_inputs : 1, sizeof *src);
    size_t k = 0;
    if (!src) {
        rc = tl_error(-ENOMEM, "out of memory starting a compaction");
        goto out;
    }
    for (size_t i = 0; i < c->n_inputs; i++) {
        read_bytes += c->inputs[i]->meta.size_bytes;
        total_entries += c->inputs[i]->meta.entries;
        src[k] = tl_source_table(c->inputs[i], false);
        if (!src[k++]) {
            rc = tl_error(-ENOMEM, "out of memory opening compaction input %06llu",
                          (unsigned long long)c->inputs[i]->meta.number);
            for (size_t j = 0; j + 1 < k; j++)
                src[j]->free(src[j]);
            free(src);
            goto out;
        }
    }
    if ((rc = tl_merger_init(&mg, src, k)) < 0) {
        for (size_t j = 0; j < k; j++)
            src[j]->free(src[j]);
        free(src);
        goto out;
    }
    if (c->progress)
        c->progress(c->progress_arg, 0, read_bytes);
    for (rc = tl_merger_seek(&mg, NULL, 0); rc == 0 && mg.valid; rc = tl_merger_next(&mg)) {
        bool bottom = c->all_bottom || !deeper_may_hold(v, c->out_level, nl, mg.key, mg.klen);
        struct tl_record r, kept;
        size_t count = 0;
        for (size_t i = 0; i < mg.n; i++)
            count += mg.at_key[i];
        if (c->progress &&
            merged_entries / TL_COMPACTION_PROGRESS_ENTRIES !=
                (merged_entries + count) / TL_COMPACTION_PROGRESS_ENTRIES &&
            merged_entries + count < total_entries)
            c->progress(c->progress_arg,
                        (uint64_t)((double)read_bytes * (double)(merged_entries + count) /
                                   (double)total_entries),
                        read_bytes);
        merged_entries += count;
        if (tl_fold_result(&mg.fold, bottom, now, &r) < 0 ||
            tl_fold_result(&mg.fold, bottom, 0, &kept) < 0) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: compaction found an increment over a byte value; "
                          "run tallyctl verify",
                          db->dir);
            break;
        }
        /* Expired, but a newer layer may build on it: keep it with its expiry. */
        if (r.kind == TL_KIND_DELETE && kept.kind != TL_KIND_DELETE &&
            newer_may_hold(v, c, mg.key, mg.klen))
            r = kept;
        if (bottom && r.kind == TL_KIND_DELETE) {
            dropped += count;
            continue;
        }
        dropped += count - 1;
        size_t need = tl_record_encoded_len(&r);
        if (need > cap) {
            uint8_t *nb = realloc(buf, need);
            if (!nb) {
                rc = tl_error(-ENOMEM, "out of memory for a value of %zu bytes", need);
                break;
            }
            buf = nb;
            cap = need;
        }
        size_t len = tl_record_encode(&r, buf);
        if ((rc = output_add(&o, mg.key, mg.klen, buf, len)) < 0)
            break;
        if (db->stopping && !c->all_bottom) {
            rc = -ECANCELED; /* closing: the inputs stay as they are */
            break;
        }
    }
    if (rc == 0)
        rc = mg.status;
    if (rc == 0)
        rc = output_finish(&o);
    if (rc < 0)
        goto out;

    for (size_t i = 0; i < c->n_inputs; i++)
        if ((rc = tl_edit_delete_file(&edit, c->input_levels[i], c->inputs[i]->meta.number)) < 0)
            goto out;
    pthread_mutex_lock(&db->mutex);
    edit.has_next_file = true;
    edit.next_file_number = db->next_file;
    /* From here the edit may be on disk even if the call fails: keep the outputs (a failed
     * log keeps them as orphans until a later edit is logged). */
    logged = true;
    rc = tl_db_log_edit_locked(db, &edit);
    bool installing = rc == 0;
    struct tl_version *nv = rc == 0 ? tl_version_clone(db->current) : NULL;
    if (rc == 0 && !nv)
        rc = tl_error(-ENOMEM, "out of memory installing a compaction");
    if (rc == 0 && (rc = tl_version_apply(db, nv, &edit)) < 0)
        tl_version_unref_locked(db, nv);
    else if (rc == 0)
        tl_version_install(db, nv);
    if (rc == 0 && c->pointer_level >= 0) {
        const struct tl_file_meta *m = &c->inputs[0]->meta;
        uint8_t *p = malloc(m->largest_len ? m->largest_len : 1);
        if (p) {
            memcpy(p, m->largest, m->largest_len);
            free(db->level_pointer[c->pointer_level]);
            db->level_pointer[c->pointer_level] = p;
            db->level_pointer_len[c->pointer_level] = m->largest_len;
        }
    }
    if (rc < 0 && installing && !db->bg_error) {
        db->bg_error = rc; /* the manifest holds the edit, memory does not */
        fprintf(stderr,
                "tally: a compaction in %s was logged but not installed, writes stopped "
                "until a restart: %s\n",
                db->dir, tl_last_error());
    }
    pthread_mutex_unlock(&db->mutex);
    if (rc == 0 && c->progress)
        c->progress(c->progress_arg, read_bytes, read_bytes);
    if (rc == 0) {
        atomic_fetch_add(&db->compactions, 1);
        atomic_fetch_add(&db->compaction_read, read_bytes);
        atomic_fetch_add(&db->compaction_written, o.written);
        atomic_fetch_add(&db->entries_dropped, dropped);
    }
out:
    if (o.b)
        tl_sst_builder_abandon(o.b);
    if (rc < 0 && !logged) {
        /* Remove the outputs already written: nothing refers to them. */
        for (size_t i = 0; i < edit.n_added; i++) {
            char path[4096];
            tl_sst_file_path(path, sizeof path, db->dir, edit.added[i].number);
            unlink(path);
        }
    }
    free(buf);
    if (mg.src)
        tl_merger_free(&mg);
    tl_edit_free(&edit);
    tl_version_release(db, v);
    return rc;
}

/* Orders the inputs newest first: L0 by descending file number, then level by level. */
static void sort_inputs(struct compaction *c)
{
    for (size_t i = 1; i < c->n_inputs; i++) {
        struct tl_table *t = c->inputs[i];
        int l = c->input_levels[i];
        size_t j = i;
        while (j > 0 &&
               (c->input_levels[j - 1] > l || (l == 0 && c->input_levels[j - 1] == 0 &&
                                               c->inputs[j - 1]->meta.number < t->meta.number))) {
            c->inputs[j] = c->inputs[j - 1];
            c->input_levels[j] = c->input_levels[j - 1];
            j--;
        }
        c->inputs[j] = t;
        c->input_levels[j] = l;
    }
}

/* The inputs of a manual compaction of [begin, end] (NULL: unbounded), of every level or of
 * the one its request names, db->mutex held. */
static int pick_manual(struct tl_db *db, struct compaction *c)
{
    struct tl_version *v = db->current;
    int nl = db->opt.num_levels;
    const uint8_t *lo = db->manual_has_begin ? db->manual_begin : NULL;
    const uint8_t *hi = db->manual_has_end ? db->manual_end : NULL;
    size_t lolen = db->manual_blen, hilen = db->manual_elen;
    struct manual_request req = {db->manual_level, db->manual_progress, db->manual_progress_arg};
    int first = req.level < 0 ? 0 : req.level, last = req.level < 0 ? nl - 1 : req.level;
    memset(c, 0, sizeof *c);
    c->pointer_level = -1;
    c->out_level = req.level < 0 || req.level == nl - 1 ? nl - 1 : req.level + 1;
    c->all_bottom = c->out_level == nl - 1;
    c->progress = req.progress;
    c->progress_arg = req.progress_arg;
    /* Widen the range until no table of the levels taken straddles its edges. */
    for (bool grew = true; grew;) {
        grew = false;
        for (int l = first; l <= last; l++) {
            for (size_t i = 0; i < v->n_files[l]; i++) {
                struct tl_table *t = v->levels[l][i];
                if (is_input(c, t) || !overlaps(&t->meta, lo, lolen, hi, hilen))
                    continue;
                int rc = add_input(c, t, l);
                if (rc < 0) {
                    compaction_release_locked(db, c);
                    return tl_error(rc, "out of memory picking a compaction");
                }
                if (lo && tl_key_cmp(t->meta.smallest, t->meta.smallest_len, lo, lolen) < 0) {
                    lo = t->meta.smallest;
                    lolen = t->meta.smallest_len;
                }
                if (hi && tl_key_cmp(t->meta.largest, t->meta.largest_len, hi, hilen) > 0) {
                    hi = t->meta.largest;
                    hilen = t->meta.largest_len;
                }
                grew = true;
            }
        }
    }
    /* One level: its tables go down into the overlapping tables of the next. */
    if (c->n_inputs > 0 && c->out_level > last) {
        int rc = add_overlapping(c, v, c->out_level);
        if (rc < 0) {
            compaction_release_locked(db, c);
            return tl_error(rc, "out of memory picking a compaction");
        }
    }
    sort_inputs(c);
    return c->n_inputs > 0;
}

/* A background compaction failed: its inputs stay, its unlogged outputs were removed, and it
 * is tried again after a delay (db->mutex held). */
static void log_failure(struct tl_db *db, int rc)
{
    if (rc == -ECANCELED)
        return;
    tl_bg_failed_locked(db, &db->compaction_failure, "compaction", rc);
}

void *tl_compaction_thread(void *arg)
{
    struct tl_db *db = arg;
    pthread_mutex_lock(&db->mutex);
    while (!db->stopping) {
        struct compaction c;
        int picked = 0;
        bool manual = false;
        if (db->dropping) {
            pthread_cond_wait(&db->bg_cond, &db->mutex);
            continue;
        }
        if (db->manual_pending) {
            db->manual_pending = false;
            db->manual_running = true;
            manual = true;
            picked = pick_manual(db, &c);
        } else if (db->opt.background_compaction && !db->bg_error &&
                   tl_bg_retry_due(&db->compaction_failure)) {
            picked = pick_compaction(db, &c);
        }
        if (picked <= 0) {
            if (manual) {
                db->manual_result = picked;
                db->manual_running = false;
                db->manual_finished = db->manual_generation;
                pthread_cond_broadcast(&db->done_cond);
                continue;
            }
            if (picked < 0)
                log_failure(db, picked);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += TL_COMPACTION_TICK_MS / 1000;
            if (db->compaction_failure.error) /* sooner: the retry */
                ts = db->compaction_failure.retry_at;
            pthread_cond_timedwait(&db->bg_cond, &db->mutex, &ts);
            continue;
        }
        db->compacting = true;
        pthread_mutex_unlock(&db->mutex);
        int rc = run_compaction(db, &c);
        tl_release_free_memory();
        pthread_mutex_lock(&db->mutex);
        db->compacting = false;
        compaction_release_locked(db, &c);
        if (rc < 0 && !manual)
            log_failure(db, rc);
        else if (rc == 0)
            tl_bg_succeeded_locked(&db->compaction_failure);
        if (manual) {
            db->manual_result = rc;
            db->manual_running = false;
            db->manual_finished = db->manual_generation;
        }
        pthread_cond_broadcast(&db->done_cond);
    }
    pthread_mutex_unlock(&db->mutex);
    return NULL;
}

static int dup_key(const void *k, size_t len, uint8_t **out)
{
    *out = NULL;
    if (!k)
        return 0;
    *out = malloc(len ? len : 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, k, len);
    return 0;
}

/* Runs a manual compaction through the compaction thread and waits for it (req: its level and
 * progress callback). */
static int compact_manual(tl_db *db, struct manual_request *req, const void *begin, size_t blen,
                          const void *end, size_t elen)
{
    pthread_mutex_lock(&db->mutex);
    if (db->stopping) {
        pthread_mutex_unlock(&db->mutex);
        return tl_error(TL_ECLOSED, "%s is closing: the compaction did not run", db->dir);
    }
    db->manual_callers++; /* tl_db_close waits for them to leave */
    pthread_mutex_unlock(&db->mutex);
    uint8_t *b = NULL, *e = NULL;
    int rc = tl_db_flush(db);
    if (rc == 0 && (dup_key(begin, blen, &b) < 0 || dup_key(end, elen, &e) < 0))
        rc = tl_error(-ENOMEM, "out of memory starting a compaction");
    pthread_mutex_lock(&db->mutex);
    if (rc < 0) {
        free(b);
        free(e);
        goto out;
    }
    /* One manual compaction at a time. */
    while ((db->manual_pending || db->manual_running) && !db->stopping)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    db->manual_level = req->level;
    db->manual_progress = req->progress;
    db->manual_progress_arg = req->progress_arg;
    free(db->manual_begin);
    free(db->manual_end);
    db->manual_begin = b;
    db->manual_end = e;
    db->manual_has_begin = begin != NULL;
    db->manual_has_end = end != NULL;
    db->manual_blen = blen;
    db->manual_elen = elen;
    db->manual_pending = true;
    uint64_t gen = ++db->manual_generation;
    pthread_cond_broadcast(&db->bg_cond);
    while (db->manual_finished < gen && !db->stopping)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    /* Closing: a compaction of this request already running still calls its progress
     * callback, whose argument is the caller's: wait until it is over. */
    while (db->stopping && db->manual_running)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    rc = db->stopping && db->manual_finished < gen
             ? tl_error(TL_ECLOSED, "%s is closing: the compaction did not run", db->dir)
             : db->manual_result;
out:
    db->manual_callers--;
    pthread_cond_broadcast(&db->done_cond);
    pthread_mutex_unlock(&db->mutex);
    return rc < 0 ? rc : 0;
}

int tl_db_compact_range(tl_db *db, const void *begin, size_t blen, const void *end, size_t elen)
{
    return tl_db_compact_range_progress(db, begin, blen, end, elen, NULL, NULL);
}

int tl_db_compact_range_progress(tl_db *db, const void *begin, size_t blen, const void *end,
                                 size_t elen, tl_progress_fn progress, void *arg)
{
    struct manual_request req = {.level = -1, .progress = progress, .progress_arg = arg};
    return compact_manual(db, &req, begin, blen, end, elen);
}

int tl_db_compact_level(tl_db *db, int level, const void *begin, size_t blen, const void *end,
                        size_t elen, tl_progress_fn progress, void *arg)
{
    if (level < 0 || level >= db->opt.num_levels)
        return tl_error(-EINVAL, "%s: no level %d to compact: the levels are 0 to %d", db->dir,
                        level, db->opt.num_levels - 1);
    struct manual_request req = {.level = level, .progress = progress, .progress_arg = arg};
    return compact_manual(db, &req, begin, blen, end, elen);
}
