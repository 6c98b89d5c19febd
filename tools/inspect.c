/*
 * inspect.c - tallyctl's read-only look at a data directory or a table: manifest, verify and
 * sst dump. The formats are read with the engine's own code (manifest.h, sst.h, record.h), so
 * there is one reader of each format, and the verification of a table is the engine's
 * tl_sst_verify (every block's checksum, its entries, the index, the filter and the props).
 *
 * verify adds what only a whole directory can show: that the manifest's edits are consistent
 * (no table added twice, none removed that is not live), that every table it lists exists with
 * the size it records and agrees with it on entries and key range, that the tables of each level
 * from 1 down do not overlap, and that no .sst file lies in the directory unlisted.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "coding.h"
#include "record.h"
#include "sst.h"
#include "tallyctl.h"
#include "uring_io.h"

#define CTL_CURRENT_MAX_BYTES 256
#define CTL_SHOW_KEY_BYTES    120 /* of a key or value in a listing */
#define CTL_MESSAGE_BYTES     1024

/* ---- the manifest ------------------------------------------------------------------------- */

bool ctl_is_data_dir(const char *dir)
{
    char path[CTL_PATH_BYTES];
    struct stat st;
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    if (stat(path, &st) == 0)
        return true;
    fprintf(stderr, "tallyctl: %s is not a Tally data directory: %s: %s\n", dir, path,
            strerror(errno));
    return false;
}

static int add_problem(struct ctl_manifest *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int add_problem(struct ctl_manifest *m, const char *fmt, ...)
{
    char msg[CTL_MESSAGE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **np = realloc(m->problems, (m->n_problems + 1) * sizeof *np);
    if (!np || !(np[m->n_problems] = strdup(msg))) {
        if (np)
            m->problems = np;
        return -ENOMEM;
    }
    m->problems = np;
    m->n_problems++;
    return 0;
}

static ssize_t find_file(const struct ctl_manifest *m, uint64_t number)
{
    for (size_t i = 0; i < m->n_files; i++)
        if (m->files[i].number == number)
            return (ssize_t)i;
    return -1;
}

/* Applies one edit as the engine does (removals, then additions), noting inconsistencies. */
static int apply_edit(void *arg, uint64_t off, const struct tl_version_edit *e)
{
    struct ctl_manifest *m = arg;
    m->edits++;
    if (e->has_log_number && e->log_number > m->log_number)
        m->log_number = e->log_number;
    if (e->has_next_file && e->next_file_number > m->next_file_number)
        m->next_file_number = e->next_file_number;
    if (e->has_last_seq && e->last_seq > m->last_seq)
        m->last_seq = e->last_seq;
    for (size_t i = 0; i < e->n_deleted; i++) {
        const struct tl_file_ref *d = &e->deleted[i];
        ssize_t at = find_file(m, d->number);
        if (at < 0 || m->files[at].level != d->level) {
            if (add_problem(m,
                            "%s: the edit at offset %" PRIu64 " removes table %06" PRIu64
                            " from level %d, which does not hold it",
                            m->path, off, d->number, d->level) < 0)
                return -ENOMEM;
            continue;
        }
        tl_file_meta_free(&m->files[at]);
        memmove(&m->files[at], &m->files[at + 1], (m->n_files - (size_t)at - 1) * sizeof *m->files);
        m->n_files--;
    }
    for (size_t i = 0; i < e->n_added; i++) {
        const struct tl_file_meta *a = &e->added[i];
        ssize_t at = find_file(m, a->number);
        if (at >= 0) {
            if (add_problem(m,
                            "%s: the edit at offset %" PRIu64 " adds table %06" PRIu64
                            " to level %d, but it is already live in level %d",
                            m->path, off, a->number, a->level, m->files[at].level) < 0)
                return -ENOMEM;
            continue;
        }
        if (m->n_files == m->cap_files) {
            size_t cap = m->cap_files ? m->cap_files * 2 : 64;
            struct tl_file_meta *nf = realloc(m->files, cap * sizeof *nf);
            if (!nf)
                return -ENOMEM;
            m->files = nf;
            m->cap_files = cap;
        }
        if (tl_file_meta_copy(&m->files[m->n_files], a) < 0)
            return -ENOMEM;
        m->n_files++;
    }
    return 0;
}

int ctl_manifest_load(const char *dir, struct ctl_manifest *m)
{
    memset(m, 0, sizeof *m);
    char path[CTL_PATH_BYTES], name[CTL_CURRENT_MAX_BYTES + 1];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tallyctl: %s is not a Tally data directory: cannot open %s: %s\n", dir,
                path, strerror(errno));
        return -1;
    }
    size_t n = fread(name, 1, CTL_CURRENT_MAX_BYTES, f);
    fclose(f);
    name[n] = '\0';
    if (n > 0 && name[n - 1] == '\n')
        name[--n] = '\0';
    if (strncmp(name, "MANIFEST-", 9) != 0 || strchr(name, '/') || n == CTL_CURRENT_MAX_BYTES) {
        fprintf(stderr,
                "tallyctl: %s does not name a manifest (MANIFEST-NNNNNN): it holds '%.64s'\n", path,
                name);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s/%s", dir, name);
    int rc = tl_manifest_read(m->path, apply_edit, m);
    if (rc < 0) {
        const char *why = tl_last_error()[0] ? tl_last_error() : tl_strerror(rc);
        fprintf(stderr, "tallyctl: cannot read the manifest %s: %s\n", m->path, why);
        ctl_manifest_free(m);
        return -1;
    }
    return 0;
}

void ctl_manifest_free(struct ctl_manifest *m)
{
    for (size_t i = 0; i < m->n_files; i++)
        tl_file_meta_free(&m->files[i]);
    free(m->files);
    for (size_t i = 0; i < m->n_problems; i++)
        free(m->problems[i]);
    free(m->problems);
    memset(m, 0, sizeof *m);
}

/* Level, then newest first in level 0 (as reads see it), by smallest key below. */
static int file_order(const void *pa, const void *pb)
{
    const struct tl_file_meta *a = pa, *b = pb;
    if (a->level != b->level)
        return a->level < b->level ? -1 : 1;
    if (a->level == 0)
        return a->number > b->number ? -1 : a->number < b->number;
    return tl_key_cmp(a->smallest, a->smallest_len, b->smallest, b->smallest_len);
}

static void print_key(const uint8_t *p, size_t n)
{
    putchar('"');
    ctl_print_escaped(stdout, p, n, CTL_SHOW_KEY_BYTES);
    putchar('"');
}

static const char *dir_arg(int argc, char **argv, const char *cmd, int *rc)
{
    const char *dir = NULL;
    *rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc && !dir) {
            dir = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            *rc = ctl_usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
            return NULL;
        }
    }
    if (!dir)
        *rc = ctl_usage_error("%s needs a data directory: --dir DIR", cmd);
    return dir;
}

/* The manifest of the directory cmd's arguments name, its tables in file_order, and the
 * directory in *dir. Returns 0, or the exit status to return. */
static int load_sorted(int argc, char **argv, const char *cmd, const char **dir,
                       struct ctl_manifest *m)
{
    int rc;
    if (!(*dir = dir_arg(argc, argv, cmd, &rc)))
        return rc;
    if (ctl_manifest_load(*dir, m) < 0)
        return CTL_EXIT_FAIL;
    if (m->n_files > 0) /* an empty manifest has no array (qsort's NULL is undefined) */
        qsort(m->files, m->n_files, sizeof *m->files, file_order);
    return 0;
}

int ctl_cmd_manifest(int argc, char **argv)
{
    const char *dir;
    struct ctl_manifest m;
    int rc = load_sorted(argc, argv, "manifest", &dir, &m);
    if (rc != 0)
        return rc;
    printf("manifest:         %s (%zu edits)\n", m.path, m.edits);
    printf("next file number: %" PRIu64 "\n", m.next_file_number);
    printf("last sequence:    %" PRIu64 "\n", m.last_seq);
    printf("log number:       %" PRIu64 " (WAL segments from this one are replayed)\n",
           m.log_number);
    for (size_t i = 0; i < m.n_files;) {
        int level = m.files[i].level;
        size_t j = i;
        uint64_t bytes = 0, entries = 0;
        for (; j < m.n_files && m.files[j].level == level; j++) {
            bytes += m.files[j].size_bytes;
            entries += m.files[j].entries;
        }
        char b[32];
        ctl_format_bytes(b, sizeof b, bytes);
        printf("level %d: %zu tables, %s, %" PRIu64 " entries\n", level, j - i, b, entries);
        for (; i < j; i++) {
            const struct tl_file_meta *f = &m.files[i];
            printf("  %06" PRIu64 ".sst  %10" PRIu64 " bytes  %8" PRIu64 " entries  ", f->number,
                   f->size_bytes, f->entries);
            print_key(f->smallest, f->smallest_len);
            fputs(" .. ", stdout);
            print_key(f->largest, f->largest_len);
            putchar('\n');
        }
    }
    if (m.n_files == 0)
        printf("no tables\n");
    for (size_t i = 0; i < m.n_problems; i++)
        printf("problem: %s\n", m.problems[i]);
    rc = m.n_problems ? CTL_EXIT_FAIL : CTL_EXIT_OK;
    ctl_manifest_free(&m);
    return rc;
}

/* ---- verify ------------------------------------------------------------------------------- */

struct verify_run {
    struct ctl_progress bar;
    uint64_t base, total; /* bytes of the tables before the current one, of all */
    size_t problems;
};

static void problem(struct verify_run *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct verify_run *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctl_progress_clear(&v->bar);
    fputs("problem: ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
    v->problems++;
}

static void verify_progress(void *arg, uint64_t done, uint64_t file_total)
{
    struct verify_run *v = arg;
    ctl_progress_update(&v->bar, v->base + done, v->total);
}

/* Tables of each level from 1 down must not overlap (files sorted by file_order). */
static void check_overlaps(struct verify_run *v, const struct ctl_manifest *m)
{
    for (size_t i = 0; i < m->n_files; i++) {
        const struct tl_file_meta *f = &m->files[i];
        if (tl_key_cmp(f->smallest, f->smallest_len, f->largest, f->largest_len) > 0)
            problem(v, "%s: table %06" PRIu64 " has its smallest key after its largest", m->path,
                    f->number);
        if (i == 0 || f->level == 0 || m->files[i - 1].level != f->level)
            continue;
        const struct tl_file_meta *p = &m->files[i - 1];
        if (tl_key_cmp(p->largest, p->largest_len, f->smallest, f->smallest_len) >= 0)
            problem(v, "%s: tables %06" PRIu64 " and %06" PRIu64 " of level %d overlap", m->path,
                    p->number, f->number, f->level);
    }
}

/* .sst files of the directory that the manifest does not list. */
static int check_unlisted(struct verify_run *v, const char *dir, const struct ctl_manifest *m)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "tallyctl: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        errno = 0;
        unsigned long long num = strtoull(de->d_name, &end, 10);
        if (end == de->d_name || strcmp(end, ".sst") != 0 || errno)
            continue;
        if (find_file(m, num) < 0)
            problem(v,
                    "%s/%s: a table the manifest %s does not list (left by an interrupted "
                    "flush or compaction, or copied in)",
                    dir, de->d_name, m->path);
    }
    closedir(d);
    return 0;
}

/* The table's own properties against what the manifest records of it. */
static void check_props(struct verify_run *v, const char *path, const struct tl_file_meta *f)
{
    struct tl_sst *t;
    if (tl_sst_open(path, f->number, NULL, &t) < 0) {
        problem(v, "%s", tl_last_error());
        return;
    }
    const struct tl_sst_props *p = tl_sst_get_props(t);
    if (p->entries != f->entries)
        problem(v, "%s: holds %" PRIu64 " entries, the manifest records %" PRIu64, path, p->entries,
                f->entries);
    if (tl_key_cmp(p->smallest, p->smallest_len, f->smallest, f->smallest_len) != 0 ||
        tl_key_cmp(p->largest, p->largest_len, f->largest, f->largest_len) != 0)
        problem(v, "%s: its key range differs from the one the manifest records", path);
    tl_sst_close(t);
}

int ctl_cmd_verify(int argc, char **argv)
{
    const char *dir;
    struct ctl_manifest m;
    int rc = load_sorted(argc, argv, "verify", &dir, &m);
    if (rc != 0)
        return rc;
    if (tl_uring_probe() < 0) { /* else every table would be reported unreadable */
        fprintf(stderr, "tallyctl: cannot verify %s: %s\n", dir, tl_last_error());
        ctl_manifest_free(&m);
        return CTL_EXIT_FAIL;
    }
    struct verify_run v = {0};
    ctl_progress_init(&v.bar, "verify");
    for (size_t i = 0; i < m.n_problems; i++)
        problem(&v, "%s", m.problems[i]);
    check_overlaps(&v, &m);
    if (check_unlisted(&v, dir, &m) < 0) {
        ctl_manifest_free(&m);
        return CTL_EXIT_FAIL;
    }

    /* Sizes first, so that the progress total is known; then every block of every table. */
    bool *present = calloc(m.n_files ? m.n_files : 1, sizeof *present);
    if (!present) {
        fprintf(stderr, "tallyctl: out of memory for %zu tables\n", m.n_files);
        ctl_manifest_free(&m);
        return CTL_EXIT_FAIL;
    }
    char path[CTL_PATH_BYTES];
    for (size_t i = 0; i < m.n_files; i++) {
        const struct tl_file_meta *f = &m.files[i];
        struct stat st;
        snprintf(path, sizeof path, "%s/%06" PRIu64 ".sst", dir, f->number);
        if (stat(path, &st) < 0)
            problem(&v, "%s: listed in level %d of %s but cannot be read: %s", path, f->level,
                    m.path, strerror(errno));
        else if ((uint64_t)st.st_size != f->size_bytes)
            problem(&v, "%s: %lld bytes, the manifest %s records %" PRIu64, path,
                    (long long)st.st_size, m.path, f->size_bytes);
        else {
            present[i] = true;
            v.total += f->size_bytes;
        }
    }
    size_t checked = 0;
    for (size_t i = 0; i < m.n_files; i++) {
        if (!present[i])
            continue;
        const struct tl_file_meta *f = &m.files[i];
        snprintf(path, sizeof path, "%s/%06" PRIu64 ".sst", dir, f->number);
        rc = tl_sst_verify(path, verify_progress, &v);
        if (rc < 0)
            problem(&v, "%s", tl_last_error()[0] ? tl_last_error() : tl_strerror(rc));
        else
            check_props(&v, path, f);
        v.base += f->size_bytes;
        checked++;
    }
    ctl_progress_update(&v.bar, v.total, v.total);
    ctl_progress_end(&v.bar);
    char total[32];
    ctl_format_bytes(total, sizeof total, v.total);
    if (v.problems == 0)
        printf("verify: %s: %zu table%s (%s) and the manifest %s are consistent; every "
               "checksum matches\n",
               dir, checked, checked == 1 ? "" : "s", total, m.path);
    else
        printf("verify: %s: %zu problem%s found (%zu tables, %s read)\n", dir, v.problems,
               v.problems == 1 ? "" : "s", checked, total);
    free(present);
    ctl_manifest_free(&m);
    return v.problems ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* ---- sst dump ----------------------------------------------------------------------------- */

static void print_time_ms(int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char buf[64];
    if (gmtime_r(&s, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm))
        printf("%s.%03dZ (%" PRId64 " ms)", buf, (int)(ms % 1000), ms);
    else
        printf("%" PRId64 " ms", ms);
}

static void print_value(const struct tl_record *r)
{
    switch (r->kind) {
    case TL_KIND_PUT_INT:
        printf("int %" PRId64, r->i);
        break;
    case TL_KIND_PUT_BYTES:
        fputs("bytes \"", stdout);
        ctl_print_escaped(stdout, r->bytes, r->len, CTL_SHOW_KEY_BYTES);
        printf("\" (%zu bytes)", r->len);
        break;
    case TL_KIND_PUT_TYPED:
        printf("typed (tag %u, %zu bytes)", r->tag, r->len);
        break;
    case TL_KIND_MERGE_INT:
        printf("merge %+" PRId64, r->i);
        break;
    case TL_KIND_DELETE:
        fputs("delete", stdout);
        break;
    case TL_KIND_EXPIRE:
        fputs("expire", stdout);
        break;
    default:
        printf("kind %u", r->kind);
        break;
    }
    if (r->has_expiry) {
        fputs(r->expire_ms ? ", expires " : ", no expiry", stdout);
        if (r->expire_ms)
            print_time_ms(r->expire_ms);
    }
}

static void print_props(const char *path, const struct tl_sst_props *p)
{
    char b[32];
    printf("file:             %s\n", path);
    printf("size:             %" PRIu64 " bytes\n", p->file_size);
    printf("entries:          %" PRIu64 "\n", p->entries);
    ctl_format_bytes(b, sizeof b, p->data_bytes);
    printf("data blocks:      %" PRIu64 " (%s stored)\n", p->data_blocks, b);
    printf("raw key bytes:    %" PRIu64 "\n", p->raw_key_bytes);
    printf("raw value bytes:  %" PRIu64 "\n", p->raw_value_bytes);
    uint64_t raw = p->raw_key_bytes + p->raw_value_bytes;
    printf("compression:      %.2f (raw bytes / stored data bytes)\n",
           p->data_bytes ? (double)raw / (double)p->data_bytes : 0.0);
    printf("deletes:          %" PRIu64 "\n", p->deletes);
    printf("merges:           %" PRIu64 " (increments and expiry changes)\n", p->merges);
    printf("expiring entries: %" PRIu64, p->expiring_entries);
    if (p->expire_p50_ms) {
        fputs(", median expiry ", stdout);
        print_time_ms(p->expire_p50_ms);
    }
    fputs("\nsmallest key:     ", stdout);
    print_key(p->smallest, p->smallest_len);
    fputs("\nlargest key:      ", stdout);
    print_key(p->largest, p->largest_len);
    putchar('\n');
}

static int dump_entries(struct tl_sst *t, const char *path, long long limit)
{
    struct tl_sst_iter *it;
    int rc = tl_sst_iter_new(t, false, &it);
    if (rc < 0)
        goto fail;
    long long shown = 0;
    for (rc = tl_sst_iter_seek(it, NULL, 0); rc == 0 && tl_sst_iter_valid(it);
         rc = tl_sst_iter_next(it)) {
        if (limit >= 0 && shown == limit) {
            printf("(stopped after %lld entries: --limit)\n", limit);
            break;
        }
        size_t klen, vlen;
        const uint8_t *key = tl_sst_iter_key(it, &klen);
        const uint8_t *val = tl_sst_iter_value(it, &vlen);
        struct tl_record r;
        print_key(key, klen);
        fputs("  ", stdout);
        if (tl_record_decode(val, vlen, &r) < 0)
            printf("undecodable value of %zu bytes", vlen);
        else
            print_value(&r);
        putchar('\n');
        shown++;
    }
    tl_sst_iter_free(it);
    if (rc == 0)
        return 0;
fail:
    fprintf(stderr, "tallyctl: reading the entries of %s: %s\n", path,
            tl_last_error()[0] ? tl_last_error() : tl_strerror(rc));
    return -1;
}

int ctl_cmd_sst(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "dump") != 0)
        return ctl_usage_error("sst needs a subcommand: sst dump FILE [--keys] [--limit N]");
    const char *file = NULL;
    bool keys = false;
    long long limit = -1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0)
            keys = true;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            if (!ctl_parse_count("--limit", argv[++i], INT64_MAX, &limit))
                return CTL_EXIT_USAGE;
        } else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else
            return ctl_usage_error("sst dump: unexpected argument '%s'", argv[i]);
    }
    if (!file)
        return ctl_usage_error("sst dump needs a table file: sst dump FILE");
    if (limit >= 0 && !keys)
        keys = true; /* --limit only makes sense with entries */
    const char *base = strrchr(file, '/');
    uint64_t number = strtoull(base ? base + 1 : file, NULL, 10);
    struct tl_sst *t;
    int rc = tl_sst_open(file, number, NULL, &t);
    if (rc < 0) {
        fprintf(stderr, "tallyctl: cannot open the table %s: %s\n", file,
                tl_last_error()[0] ? tl_last_error() : tl_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    print_props(file, tl_sst_get_props(t));
    rc = keys ? dump_entries(t, file, limit) : 0;
    tl_sst_close(t);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}
