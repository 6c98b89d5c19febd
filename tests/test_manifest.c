/*
 * test_manifest.c - the manifest: a new database, 1000 random edits replayed exactly after
 * reopening, rolling to a new file (and not rolling at every edit when the snapshot itself is
 * large), CURRENT always naming a file that exists, edits the state forbids refused, a torn last
 * record ignored, and corruption reported with the file and offset.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "manifest.h"
#include "testutil.h"

#define N_EDITS        1000
#define BIG_KEY_BYTES  (60 << 10)
#define MAX_MODEL      4096
#define PATH_BYTES     4200
#define HEADER_BYTES   16
#define BASE_EXPIRE_MS 1700000000000ll

/* ---- A model of the state, kept by the test ---- */

struct model {
    struct tl_file_meta files[MAX_MODEL];
    size_t n;
    uint64_t log_number, next_file, last_seq;
};

static void model_free(struct model *md)
{
    for (size_t i = 0; i < md->n; i++)
        tl_file_meta_free(&md->files[i]);
    md->n = 0;
}

static int cmp_meta(const void *a, const void *b)
{
    const struct tl_file_meta *x = a, *y = b;
    if (x->level != y->level)
        return x->level - y->level;
    return x->number < y->number ? -1 : x->number > y->number;
}

static bool same_key(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The state returned by tl_manifest_open equals the model, field by field, in (level, number)
 * order. */
static void check_state(struct model *md, const struct tl_version_edit *st)
{
    CHECK(st->has_log_number && st->has_next_file && st->has_last_seq);
    CHECK_EQ_INT(st->log_number, md->log_number);
    CHECK_EQ_INT(st->last_seq, md->last_seq);
    CHECK_EQ_INT(st->n_deleted, 0);
    CHECK_EQ_INT(st->n_added, md->n);
    qsort(md->files, md->n, sizeof md->files[0], cmp_meta);
    for (size_t i = 0; i < md->n; i++) {
        const struct tl_file_meta *a = &st->added[i], *b = &md->files[i];
        CHECK_EQ_INT(a->level, b->level);
        CHECK_EQ_INT(a->number, b->number);
        CHECK_EQ_INT(a->size_bytes, b->size_bytes);
        CHECK_EQ_INT(a->entries, b->entries);
        CHECK_EQ_INT(a->raw_bytes, b->raw_bytes);
        CHECK(same_key(a->smallest, a->smallest_len, b->smallest, b->smallest_len));
        CHECK(same_key(a->largest, a->largest_len, b->largest, b->largest_len));
        CHECK_EQ_INT(a->expiring_entries, b->expiring_entries);
        CHECK_EQ_INT(a->expire_p50_ms, b->expire_p50_ms);
    }
}

static size_t model_find(const struct model *md, uint64_t number)
{
    for (size_t i = 0; i < md->n; i++)
        if (md->files[i].number == number)
            return i;
    return SIZE_MAX;
}

static void model_apply(struct model *md, const struct tl_version_edit *e)
{
    for (size_t i = 0; i < e->n_deleted; i++) {
        size_t k = model_find(md, e->deleted[i].number);
        CHECK(k != SIZE_MAX);
        tl_file_meta_free(&md->files[k]);
        md->files[k] = md->files[--md->n];
    }
    for (size_t i = 0; i < e->n_added; i++) {
        CHECK(md->n < MAX_MODEL);
        CHECK_OK(tl_file_meta_copy(&md->files[md->n++], &e->added[i]));
    }
    if (e->has_log_number && e->log_number > md->log_number)
        md->log_number = e->log_number;
    if (e->has_next_file && e->next_file_number > md->next_file)
        md->next_file = e->next_file_number;
    if (e->has_last_seq && e->last_seq > md->last_seq)
        md->last_seq = e->last_seq;
}

static uint8_t key_buf[2][BIG_KEY_BYTES];

/* A table with random keys of up to key_max bytes (key_max 0: empty keys). */
static void make_meta(struct tl_file_meta *m, int level, uint64_t number, size_t key_max,
                      uint64_t *rng)
{
    memset(m, 0, sizeof *m);
    m->level = level;
    m->number = number;
    m->size_bytes = test_rand(rng) % (64u << 20);
    m->entries = test_rand(rng) % 1000000;
    m->raw_bytes = test_rand(rng);
    for (int k = 0; k < 2; k++) {
        size_t len = key_max ? (size_t)(test_rand(rng) % (key_max + 1)) : 0;
        for (size_t j = 0; j < len; j++)
            key_buf[k][j] = (uint8_t)test_rand(rng);
        if (k == 0) {
            m->smallest = key_buf[0];
            m->smallest_len = len;
        } else {
            m->largest = key_buf[1];
            m->largest_len = len;
        }
    }
    m->expiring_entries = number % 3 ? test_rand(rng) % 1000 : 0;
    m->expire_p50_ms = m->expiring_entries ? BASE_EXPIRE_MS + (int64_t)(number * 1000) : 0;
}

/* A random edit: adds, deletes and level moves of live tables; sometimes the numbers. */
static void make_edit(struct tl_version_edit *e, const struct model *md, uint64_t *next_number,
                      uint64_t *rng, size_t key_max)
{
    tl_edit_init(e);
    uint64_t r = test_rand(rng);
    size_t n_del = md->n > 20 ? r % 3 : 0;
    bool taken[MAX_MODEL] = {0};
    for (size_t i = 0; i < n_del; i++) {
        size_t k = (size_t)(test_rand(rng) % md->n);
        if (taken[k])
            continue;
        taken[k] = true;
        const struct tl_file_meta *f = &md->files[k];
        CHECK_OK(tl_edit_delete_file(e, f->level, f->number));
        if (f->level + 1 < TL_MAX_LEVELS && test_rand(rng) % 4 == 0) {
            struct tl_file_meta moved = *f; /* a move to the next level, keys shared */
            moved.level++;
            CHECK_OK(tl_edit_add_file(e, &moved));
        }
    }
    size_t n_add = (r >> 8) % 3 + (md->n < 10);
    for (size_t i = 0; i < n_add; i++) {
        struct tl_file_meta m;
        make_meta(&m, (int)(test_rand(rng) % TL_MAX_LEVELS), (*next_number)++, key_max, rng);
        CHECK_OK(tl_edit_add_file(e, &m));
    }
    if ((r >> 16) % 2) {
        e->has_next_file = true;
        e->next_file_number = *next_number;
    }
    if ((r >> 20) % 3 == 0) {
        e->has_log_number = true;
        e->log_number = md->log_number + (r >> 24) % 3;
    }
    if ((r >> 28) % 2) {
        e->has_last_seq = true;
        e->last_seq = md->last_seq + (r >> 32) % 1000;
    }
}

/* ---- Files ---- */

static uint64_t file_size(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* CURRENT names name, and that file exists. */
static void check_current(const char *dir, const char *name)
{
    char path[PATH_BYTES], buf[128] = {0}, want[128];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    snprintf(want, sizeof want, "%s\n", name);
    CHECK_EQ_INT(n, strlen(want));
    CHECK(strcmp(buf, want) == 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(exists(path));
    snprintf(path, sizeof path, "%s/CURRENT.tmp", dir);
    CHECK(!exists(path));
}

/* How many MANIFEST-* files the directory holds. */
static int count_manifests(const char *dir)
{
    char cmd[PATH_BYTES + 64], out[32] = {0};
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^MANIFEST-'", dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    CHECK(fgets(out, sizeof out, p) != NULL);
    pclose(p);
    return atoi(out);
}

static void manifest_path(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK(pread(fd, &b, 1, (off_t)off) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2 * PATH_BYTES + 16];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

/* ---- tl_manifest_read ---- */

#define MAX_OFFSETS 2048

struct edit_list {
    uint64_t offs[MAX_OFFSETS];
    size_t added[MAX_OFFSETS], deleted[MAX_OFFSETS];
    size_t n;
};

static int list_fn(void *arg, uint64_t off, const struct tl_version_edit *e)
{
    struct edit_list *l = arg;
    CHECK(l->n < MAX_OFFSETS);
    l->offs[l->n] = off;
    l->added[l->n] = e->n_added;
    l->deleted[l->n] = e->n_deleted;
    l->n++;
    return 0;
}

/* ---- Tests ---- */

static void test_new_database(void)
{
    char *dir = test_tmpdir("man-new");
    struct tl_manifest *m;
    struct tl_version_edit st;
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    CHECK(strcmp(tl_manifest_name(m), "MANIFEST-000001") == 0);
    CHECK(st.has_log_number && st.has_next_file && st.has_last_seq);
    CHECK_EQ_INT(st.log_number, 0);
    CHECK_EQ_INT(st.next_file_number, 2); /* 1 is the manifest */
    CHECK_EQ_INT(st.last_seq, 0);
    CHECK_EQ_INT(st.n_added, 0);
    CHECK_EQ_INT(st.n_deleted, 0);
    tl_edit_free(&st);
    check_current(dir, "MANIFEST-000001");
    tl_manifest_close(m);

    /* Every open writes a fresh manifest with the next number and removes the old one. */
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    CHECK(strcmp(tl_manifest_name(m), "MANIFEST-000002") == 0);
    CHECK_EQ_INT(st.next_file_number, 3);
    CHECK_EQ_INT(st.n_added, 0);
    tl_edit_free(&st);
    check_current(dir, "MANIFEST-000002");
    CHECK_EQ_INT(count_manifests(dir), 1);
    tl_manifest_close(m);

    /* tl_manifest_read of a fresh manifest: one snapshot edit right after the header. */
    char path[PATH_BYTES];
    manifest_path(path, sizeof path, dir, "MANIFEST-000002");
    struct edit_list *l = calloc(1, sizeof *l);
    CHECK(l);
    CHECK_OK(tl_manifest_read(path, list_fn, l));
    CHECK_EQ_INT(l->n, 1);
    CHECK_EQ_INT(l->offs[0], HEADER_BYTES);
    free(l);
    CHECK_EQ_INT(tl_manifest_read("/nonexistent/MANIFEST-000001", list_fn, NULL), -ENOENT);

    /* A missing directory fails with the path in the message. */
    CHECK(tl_manifest_open("/nonexistent/db", &m, &st) < 0);
    CHECK(strstr(tl_last_error(), "/nonexistent/db") != NULL);
    test_rmdir(dir);
    free(dir);
}

/* Logs n random edits, applying each to the model too. */
static void log_random(struct tl_manifest *m, struct model *md, uint64_t *next_number,
                       uint64_t *rng, int n, size_t key_max)
{
    for (int i = 0; i < n; i++) {
        struct tl_version_edit e;
        make_edit(&e, md, next_number, rng, key_max);
        CHECK_OK(tl_manifest_log(m, &e));
        model_apply(md, &e);
        tl_edit_free(&e);
    }
}

static void test_edits_reopen_exact(void)
{
    char *dir = test_tmpdir("man-edits");
    struct tl_manifest *m;
    struct tl_version_edit st;
    struct model *md = calloc(1, sizeof *md);
    CHECK(md);
    uint64_t rng = 42, next_number = 100;

    CHECK_OK(tl_manifest_open(dir, &m, &st));
    tl_edit_free(&st);
    log_random(m, md, &next_number, &rng, N_EDITS, 40);
    CHECK(md->n > 50);
    char path[PATH_BYTES];
    manifest_path(path, sizeof path, dir, tl_manifest_name(m));
    CHECK(strcmp(tl_manifest_name(m), "MANIFEST-000001") == 0); /* well under the bound */
    tl_manifest_close(m);

    /* The file holds the snapshot and the 1000 edits, in order. */
    struct edit_list *l = calloc(1, sizeof *l);
    CHECK(l);
    CHECK_OK(tl_manifest_read(path, list_fn, l));
    CHECK_EQ_INT(l->n, N_EDITS + 1);
    CHECK_EQ_INT(l->offs[0], HEADER_BYTES);
    for (size_t i = 1; i < l->n; i++)
        CHECK(l->offs[i] > l->offs[i - 1]);

    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    /* next_file: the largest any edit recorded, then one more for the new manifest. */
    uint64_t want_next = (md->next_file > 2 ? md->next_file : 2) + 1;
    CHECK_EQ_INT(st.next_file_number, want_next);
    CHECK(strcmp(tl_manifest_name(m), "MANIFEST-000001") != 0);
    check_current(dir, tl_manifest_name(m));
    CHECK(!exists(path));
    tl_edit_free(&st);

    /* More edits on the reopened manifest, then again. */
    log_random(m, md, &next_number, &rng, 200, 40);
    tl_manifest_close(m);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);
    CHECK_EQ_INT(count_manifests(dir), 1);

    model_free(md);
    free(md);
    free(l);
    test_rmdir(dir);
    free(dir);
}

static void test_invalid_edits_refused(void)
{
    char *dir = test_tmpdir("man-invalid");
    struct tl_manifest *m;
    struct tl_version_edit st, e;
    struct tl_file_meta a, b;
    uint64_t rng = 7;
    char path[PATH_BYTES];
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    tl_edit_free(&st);
    manifest_path(path, sizeof path, dir, tl_manifest_name(m));

    tl_edit_init(&e);
    make_meta(&a, 0, 10, 8, &rng);
    CHECK_OK(tl_edit_add_file(&e, &a));
    make_meta(&b, 2, 11, 8, &rng);
    CHECK_OK(tl_edit_add_file(&e, &b));
    CHECK_OK(tl_manifest_log(m, &e));
    tl_edit_free(&e);
    uint64_t size = file_size(path);

    /* Deleting a table that is not live, or not at that level. */
    tl_edit_init(&e);
    CHECK_OK(tl_edit_delete_file(&e, 0, 12));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    CHECK(strstr(tl_last_error(), "000012") != NULL);
    tl_edit_free(&e);
    tl_edit_init(&e);
    CHECK_OK(tl_edit_delete_file(&e, 1, 11));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    tl_edit_free(&e);
    /* The same table deleted twice in one edit. */
    tl_edit_init(&e);
    CHECK_OK(tl_edit_delete_file(&e, 0, 10));
    CHECK_OK(tl_edit_delete_file(&e, 0, 10));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    tl_edit_free(&e);
    /* Adding a live table, the same one twice, or to a level that does not exist. */
    tl_edit_init(&e);
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    tl_edit_free(&e);
    tl_edit_init(&e);
    make_meta(&a, 0, 13, 8, &rng);
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    tl_edit_free(&e);
    tl_edit_init(&e);
    make_meta(&a, TL_MAX_LEVELS, 14, 8, &rng);
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_EQ_INT(tl_manifest_log(m, &e), -EINVAL);
    tl_edit_free(&e);
    CHECK_EQ_INT(file_size(path), size); /* nothing was written */

    /* A move: deleted from level 0 and added to level 1 in one edit. */
    tl_edit_init(&e);
    make_meta(&a, 0, 10, 8, &rng);
    a.level = 1;
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_OK(tl_edit_delete_file(&e, 0, 10));
    CHECK_OK(tl_manifest_log(m, &e));
    tl_edit_free(&e);
    tl_manifest_close(m);

    CHECK_OK(tl_manifest_open(dir, &m, &st));
    CHECK_EQ_INT(st.n_added, 2);
    CHECK_EQ_INT(st.added[0].level, 1);
    CHECK_EQ_INT(st.added[0].number, 10);
    CHECK(same_key(st.added[0].smallest, st.added[0].smallest_len, a.smallest, a.smallest_len));
    CHECK_EQ_INT(st.added[1].level, 2);
    CHECK_EQ_INT(st.added[1].number, 11);
    tl_edit_free(&st);
    tl_manifest_close(m);
    test_rmdir(dir);
    free(dir);
}

static void test_roll(void)
{
    char *dir = test_tmpdir("man-roll");
    struct tl_manifest *m;
    struct tl_version_edit st, e;
    struct model *md = calloc(1, sizeof *md);
    CHECK(md);
    uint64_t rng = 99, next_number = 10;
    char name[64], old_path[PATH_BYTES];

    CHECK_OK(tl_manifest_open(dir, &m, &st));
    tl_edit_free(&st);
    /* Each edit adds a table with two keys of up to 60 KiB and drops the oldest beyond four:
     * about 60 KiB an edit on average, so 4 MiB is passed in about 70 edits. */
    int rolls = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "%s", tl_manifest_name(m));
        tl_edit_init(&e);
        struct tl_file_meta f;
        make_meta(&f, i % TL_MAX_LEVELS, next_number++, BIG_KEY_BYTES, &rng);
        CHECK_OK(tl_edit_add_file(&e, &f));
        if (md->n >= 4) {
            qsort(md->files, md->n, sizeof md->files[0], cmp_meta);
            CHECK_OK(tl_edit_delete_file(&e, md->files[0].level, md->files[0].number));
        }
        e.has_last_seq = true;
        e.last_seq = (uint64_t)i * 10;
        e.has_next_file = true;
        e.next_file_number = next_number;
        CHECK_OK(tl_manifest_log(m, &e));
        model_apply(md, &e);
        tl_edit_free(&e);
        if (strcmp(name, tl_manifest_name(m)) != 0) {
            rolls++;
            /* The old file is gone, CURRENT names the new one, which exists. */
            manifest_path(old_path, sizeof old_path, dir, name);
            CHECK(!exists(old_path));
            check_current(dir, tl_manifest_name(m));
            CHECK_EQ_INT(count_manifests(dir), 1);
        }
        /* Just before a roll the file is near the bound, never far past it. */
        manifest_path(old_path, sizeof old_path, dir, tl_manifest_name(m));
        CHECK(file_size(old_path) < TL_MANIFEST_ROLL_BYTES + 2 * (BIG_KEY_BYTES + 64));
    }
    CHECK(rolls >= 2);
    tl_manifest_close(m);

    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    CHECK_EQ_INT(st.last_seq, 2990);
    /* The rolls used file numbers: next_file is past each manifest's number. */
    CHECK(st.next_file_number > next_number);
    tl_edit_free(&st);
    tl_manifest_close(m);
    model_free(md);

    /* A snapshot larger than the bound: after one roll the manifest does not roll again at
     * every edit. 80 tables with 2 full 60 KiB keys: a snapshot of about 9.6 MiB. */
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    model_apply(md, &st);
    tl_edit_free(&st);
    for (int i = 0; i < 80; i++) {
        tl_edit_init(&e);
        struct tl_file_meta f;
        make_meta(&f, 1, next_number++, 0, &rng);
        memset(key_buf[0], 'a', BIG_KEY_BYTES);
        memset(key_buf[1], 'z', BIG_KEY_BYTES);
        f.smallest = key_buf[0];
        f.smallest_len = BIG_KEY_BYTES;
        f.largest = key_buf[1];
        f.largest_len = BIG_KEY_BYTES;
        CHECK_OK(tl_edit_add_file(&e, &f));
        CHECK_OK(tl_manifest_log(m, &e));
        model_apply(md, &e);
        tl_edit_free(&e);
    }
    snprintf(name, sizeof name, "%s", tl_manifest_name(m));
    int changes = 0;
    for (int i = 0; i < 40; i++) {
        tl_edit_init(&e);
        e.has_last_seq = true;
        e.last_seq = 100000 + (uint64_t)i;
        CHECK_OK(tl_manifest_log(m, &e));
        model_apply(md, &e);
        tl_edit_free(&e);
        if (strcmp(name, tl_manifest_name(m)) != 0) {
            changes++;
            snprintf(name, sizeof name, "%s", tl_manifest_name(m));
        }
    }
    CHECK(changes <= 1);
    tl_manifest_close(m);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    model_free(md);
    free(md);
    test_rmdir(dir);
    free(dir);
}

/* Builds a database with a manifest of a snapshot and 60 edits (not reopened, so the current
 * file holds them all). md gets the state before the last edit in md_prev. */
static void build_damage_db(const char *dir, struct model *md, struct model *md_prev, char *path,
                            size_t cap, struct edit_list *l)
{
    struct tl_manifest *m;
    struct tl_version_edit st;
    uint64_t rng = 5, next_number = 10;
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    tl_edit_free(&st);
    log_random(m, md, &next_number, &rng, 59, 20);
    for (size_t i = 0; i < md->n; i++)
        CHECK_OK(tl_file_meta_copy(&md_prev->files[i], &md->files[i]));
    md_prev->n = md->n;
    md_prev->log_number = md->log_number;
    md_prev->next_file = md->next_file;
    md_prev->last_seq = md->last_seq;
    /* The last edit adds a table with 32-byte keys: a record of about 90 bytes. */
    struct tl_version_edit e;
    struct tl_file_meta f;
    tl_edit_init(&e);
    make_meta(&f, 2, next_number++, 0, &rng);
    memset(key_buf[0], 'k', 32);
    f.smallest = f.largest = key_buf[0];
    f.smallest_len = f.largest_len = 32;
    CHECK_OK(tl_edit_add_file(&e, &f));
    CHECK_OK(tl_manifest_log(m, &e));
    model_apply(md, &e);
    tl_edit_free(&e);
    manifest_path(path, cap, dir, tl_manifest_name(m));
    tl_manifest_close(m);
    l->n = 0;
    CHECK_OK(tl_manifest_read(path, list_fn, l));
    CHECK_EQ_INT(l->n, 61);
}

static void test_torn_last_record_ignored(void)
{
    char *dir = test_tmpdir("man-torn");
    char path[PATH_BYTES], saved[PATH_BYTES + 16];
    struct model *md = calloc(1, sizeof *md), *prev = calloc(1, sizeof *prev);
    struct edit_list *l = calloc(1, sizeof *l);
    CHECK(md && prev && l);
    struct tl_manifest *m;
    struct tl_version_edit st;

    build_damage_db(dir, md, prev, path, sizeof path, l);
    snprintf(saved, sizeof saved, "%s/saved.copy", dir); /* not MANIFEST-*: open removes those */
    copy_file(path, saved);
    uint64_t size = file_size(path);
    uint64_t last_off = l->offs[60];

    /* Cut in the middle of the last record: the state before it. */
    CHECK(size - last_off > 80);
    CHECK(truncate(path, (off_t)(last_off + (size - last_off) / 2)) == 0);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(prev, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);
    CHECK(!exists(path));
    /* The torn record is gone for good: the next open agrees. */
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(prev, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    /* Cut inside the last record's frame. */
    char cur[PATH_BYTES];
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    FILE *f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "%s\n", strrchr(path, '/') + 1);
    fclose(f);
    copy_file(saved, path);
    CHECK(truncate(path, (off_t)(last_off + 3)) == 0);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(prev, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    /* The last record whole but with a bad checksum and zeros after it (a zero-filled
     * extension of the file): torn as well. The whole file intact with zeros after it: all
     * edits. */
    f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "%s\n", strrchr(path, '/') + 1);
    fclose(f);
    copy_file(saved, path);
    CHECK(truncate(path, (off_t)(size + 4096)) == 0);
    flip_byte(path, size - 1);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(prev, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "%s\n", strrchr(path, '/') + 1);
    fclose(f);
    copy_file(saved, path);
    CHECK(truncate(path, (off_t)(size + 4096)) == 0);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    model_free(md);
    model_free(prev);
    free(md);
    free(prev);
    free(l);
    test_rmdir(dir);
    free(dir);
}

static void test_corruption_reported(void)
{
    char *dir = test_tmpdir("man-corrupt");
    char path[PATH_BYTES], want[PATH_BYTES + 64], cur[PATH_BYTES];
    struct model *md = calloc(1, sizeof *md), *prev = calloc(1, sizeof *prev);
    struct edit_list *l = calloc(1, sizeof *l);
    CHECK(md && prev && l);
    struct tl_manifest *m;
    struct tl_version_edit st;
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);

    /* A flipped byte in the payload of a record in the middle. */
    build_damage_db(dir, md, prev, path, sizeof path, l);
    uint64_t bad = l->offs[30];
    flip_byte(path, bad + 8 + 2);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    CHECK(m == NULL);
    CHECK(strstr(tl_last_error(), path) != NULL);
    snprintf(want, sizeof want, "offset %llu ", (unsigned long long)bad);
    CHECK(strstr(tl_last_error(), want) != NULL);
    CHECK_EQ_INT(st.n_added, 0);
    CHECK(exists(path)); /* nothing was switched or removed */
    tl_edit_free(&st);
    l->n = 0;
    CHECK_EQ_INT(tl_manifest_read(path, list_fn, l), TL_ECORRUPT);
    CHECK_EQ_INT(l->n, 30); /* the edits before it were delivered */
    CHECK(strstr(tl_last_error(), want) != NULL);
    flip_byte(path, bad + 8 + 2);

    /* A flipped byte in the length field of the first record: the checksum no longer matches
     * and valid data follows, so it is corruption too. */
    flip_byte(path, l->offs[1] + 4);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    snprintf(want, sizeof want, "offset %llu ", (unsigned long long)l->offs[1]);
    CHECK(strstr(tl_last_error(), want) != NULL);
    tl_edit_free(&st);
    flip_byte(path, l->offs[1] + 4);

    /* Bad magic. */
    flip_byte(path, 2);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), path) != NULL);
    CHECK(strstr(tl_last_error(), "offset 0") != NULL);
    tl_edit_free(&st);
    flip_byte(path, 2);

    /* CURRENT that is not a manifest name, and one that names a missing file. */
    FILE *f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "garbage\n");
    fclose(f);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), cur) != NULL);
    tl_edit_free(&st);
    f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "MANIFEST-000777\n");
    fclose(f);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), "MANIFEST-000777") != NULL);
    tl_edit_free(&st);

    /* Put CURRENT back: the repaired file opens with the whole state. */
    f = fopen(cur, "w");
    CHECK(f);
    fprintf(f, "%s\n", strrchr(path, '/') + 1);
    fclose(f);
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    check_state(md, &st);
    tl_edit_free(&st);
    tl_manifest_close(m);

    model_free(md);
    model_free(prev);
    free(md);
    free(prev);
    free(l);
    test_rmdir(dir);
    free(dir);
}

/* An edit that is well-formed but impossible in the state it follows (a deletion of a table
 * that is not live) is corruption when replayed. */
static void test_inconsistent_edit_is_corruption(void)
{
    char *dir = test_tmpdir("man-inconsistent");
    struct tl_manifest *m;
    struct tl_version_edit st, e;
    struct tl_file_meta a;
    uint64_t rng = 3;
    char path[PATH_BYTES], want[64];
    CHECK_OK(tl_manifest_open(dir, &m, &st));
    tl_edit_free(&st);
    tl_edit_init(&e);
    make_meta(&a, 3, 50, 8, &rng);
    CHECK_OK(tl_edit_add_file(&e, &a));
    CHECK_OK(tl_manifest_log(m, &e));
    tl_edit_free(&e);
    tl_edit_init(&e);
    CHECK_OK(tl_edit_delete_file(&e, 3, 50));
    CHECK_OK(tl_manifest_log(m, &e));
    tl_edit_free(&e);
    manifest_path(path, sizeof path, dir, tl_manifest_name(m));
    tl_manifest_close(m);
    struct edit_list *l = calloc(1, sizeof *l);
    CHECK(l);
    CHECK_OK(tl_manifest_read(path, list_fn, l));
    CHECK_EQ_INT(l->n, 3);
    CHECK_EQ_INT(l->added[1], 1);
    CHECK_EQ_INT(l->deleted[2], 1);

    /* Remove the record that added the table: the deletion now names a table never added.
     * The file is rebuilt as header + snapshot + the deleting record. */
    FILE *f = fopen(path, "rb");
    CHECK(f);
    uint64_t size = file_size(path);
    uint8_t *buf = malloc(size);
    CHECK(buf && fread(buf, 1, size, f) == size);
    fclose(f);
    size_t keep1 = (size_t)l->offs[1], del_off = (size_t)l->offs[2];
    f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(buf, 1, keep1, f) == keep1);
    CHECK(fwrite(buf + del_off, 1, size - del_off, f) == size - del_off);
    fclose(f);
    free(buf);
    CHECK_EQ_INT(tl_manifest_open(dir, &m, &st), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), path) != NULL);
    snprintf(want, sizeof want, "offset %zu ", keep1);
    CHECK(strstr(tl_last_error(), want) != NULL);
    CHECK(strstr(tl_last_error(), "000050") != NULL);
    tl_edit_free(&st);
    free(l);
    test_rmdir(dir);
    free(dir);
}

int main(void)
{
    test_require_uring();
    test_new_database();
    test_edits_reopen_exact();
    test_invalid_edits_refused();
    test_torn_last_record_ignored();
    test_corruption_reported();
    test_inconsistent_edit_is_corruption();
    test_roll();
    return 0;
}
