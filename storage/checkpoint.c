/*
 * checkpoint.c - consistent copies of a live database, and the list of its live files.
 *
 * A checkpoint flushes the memtables, pins the files (nothing is deleted while a checkpoint or a
 * file list is out: compactions still run, and the tables they replace are removed when the
 * pin is released), hard-links each live table into the destination (copying the file
 * where a link is impossible, as across file systems), and writes the destination's own
 * manifest naming exactly those tables. Tables are immutable, so a link is a copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_impl.h"
#include "error.h"
#include "uring_io.h"

#define TL_COPY_CHUNK_BYTES (1u << 20)

int tl_db_live_files(tl_db *db, char ***paths, size_t *count)
{
    /* Every record appended so far is written first: its segment then exists, and a copy of the
     * list holds every write acknowledged before the call. */
    int rc = tl_wal_wait(db->wal, tl_wal_next_seq(db->wal) - 1, TL_WAIT_WRITTEN);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&db->mutex);
    struct tl_version *v = db->current;
    /* Segments from the oldest still needed to the newest, which is past the active memtable's
     * wal_number when recovery left that memtable records of older segments. */
    uint64_t last_wal = db->next_file - 1;
    size_t n = (size_t)(last_wal - db->log_number + 1);
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        n += v->n_files[l];
    char **p = calloc(n ? n : 1, sizeof *p);
    size_t k = 0;
    if (!p) {
        rc = tl_error(-ENOMEM, "out of memory listing files");
        goto out;
    }
    char buf[64];
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        for (size_t i = 0; i < v->n_files[l]; i++) {
            snprintf(buf, sizeof buf, "%06llu.sst",
                     (unsigned long long)v->levels[l][i]->meta.number);
            if (!(p[k++] = strdup(buf)))
                rc = -ENOMEM;
        }
    for (uint64_t num = db->log_number; num <= last_wal && rc == 0; num++) {
        char path[4096];
        tl_wal_path(path, sizeof path, db->dir, num);
        if (access(path, F_OK) != 0)
            continue;
        if (!(p[k++] = strdup(strrchr(path, '/') + 1)))
            rc = -ENOMEM;
    }
    if (rc < 0) {
        tl_db_free_file_list(p, k);
        rc = tl_error(rc, "out of memory listing files");
        goto out;
    }
    db->pinned++;
    *paths = p;
    *count = k;
out:
    pthread_mutex_unlock(&db->mutex);
    return rc;
}

void tl_db_free_file_list(char **paths, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}

void tl_db_release_files(tl_db *db)
{
    pthread_mutex_lock(&db->mutex);
    if (db->pinned > 0 && --db->pinned == 0) {
        for (size_t i = 0; i < db->n_pending_deletes; i++) {
            unlink(db->pending_deletes[i]);
            free(db->pending_deletes[i]);
        }
        db->n_pending_deletes = 0;
    }
    pthread_mutex_unlock(&db->mutex);
}

/* Copies one file (reads through io_uring, writes with pwrite), syncing the copy. */
static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return tl_error(-errno, "cannot open %s to copy it: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return tl_error(-e, "cannot create %s: %s", to, strerror(e));
    }
    char *buf = malloc(TL_COPY_CHUNK_BYTES);
    int rc = buf ? 0 : tl_error(-ENOMEM, "out of memory copying %s", from);
    for (uint64_t off = 0; rc == 0;) {
        int64_t n = tl_io_pread(in, buf, TL_COPY_CHUNK_BYTES, off);
        if (n < 0) {
            rc = tl_error((int)n, "cannot read %s at offset %llu: %s", from,
                          (unsigned long long)off, strerror((int)-n));
            break;
        }
        if (n == 0)
            break;
        if ((rc = tl_io_pwrite(out, buf, (size_t)n, off, false)) < 0) {
            rc = tl_error(rc, "cannot write %s: %s", to, strerror(-rc));
            break;
        }
        off += (uint64_t)n;
    }
    if (rc == 0 && (rc = tl_io_fdatasync(out)) < 0)
        rc = tl_error(rc, "cannot sync %s: %s", to, strerror(-rc));
    free(buf);
    close(in);
    close(out);
    return rc;
}

int tl_db_checkpoint(tl_db *db, const char *dest, tl_progress_fn progress, void *arg)
{
    if (access(dest, F_OK) == 0)
        return tl_error(-EEXIST, "checkpoint destination %s already exists; choose a new path",
                        dest);
    int rc = tl_db_flush(db);
    if (rc < 0)
        return rc;

    /* What the copy holds: the tables of this moment. */
    struct tl_version_edit edit;
    tl_edit_init(&edit);
    pthread_mutex_lock(&db->mutex);
    struct tl_version *v = db->current;
    v->refs++;
    db->pinned++;
    edit.has_next_file = true;
    edit.next_file_number = db->next_file;
    pthread_mutex_unlock(&db->mutex);
    edit.has_last_seq = true;
    edit.last_seq = tl_wal_next_seq(db->wal) - 1;
    edit.has_log_number = true;
    edit.log_number = edit.next_file_number; /* the copy has no WAL to replay */
    uint64_t total = 0, done = 0;
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        for (size_t i = 0; i < v->n_files[l]; i++) {
            total += v->levels[l][i]->meta.size_bytes;
            if (rc == 0)
                rc = tl_edit_add_file(&edit, &v->levels[l][i]->meta);
        }
    if (rc < 0)
        goto out;
    if (mkdir(dest, 0755) < 0) {
        rc = tl_error(-errno, "cannot create checkpoint directory %s: %s", dest, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < edit.n_added; i++) {
        char from[4096], to[4096];
        tl_sst_file_path(from, sizeof from, db->dir, edit.added[i].number);
        tl_sst_file_path(to, sizeof to, dest, edit.added[i].number);
        if (link(from, to) < 0 && (rc = copy_file(from, to)) < 0)
            goto out;
        done += edit.added[i].size_bytes;
        if (progress)
            progress(arg, done, total);
    }
    struct tl_manifest *m;
    struct tl_version_edit state;
    tl_edit_init(&state);
    if ((rc = tl_manifest_open(dest, &m, &state)) < 0)
        goto out;
    tl_edit_free(&state);
    rc = tl_manifest_log(m, &edit);
    tl_manifest_close(m);
    if (rc == 0)
        rc = tl_io_sync_dir(dest);
out:
    tl_edit_free(&edit);
    pthread_mutex_lock(&db->mutex);
    tl_version_unref_locked(db, v);
    pthread_mutex_unlock(&db->mutex);
    tl_db_release_files(db);
    return rc;
}
