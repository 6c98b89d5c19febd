/*
 * test_corruption_db.c - damaged files and a second process, through the public API only.
 *
 * (d) While one process has the database open, tl_db_open of the same directory from a second
 *     process fails with TL_ELOCKED and a message naming the directory; once the first closes
 *     it, the second process opens it and reads what the first wrote.
 * (a) A byte flipped inside the first data block of a flushed .sst: the first key (which is in
 *     that block) reads as TL_ECORRUPT with the .sst file's name in tl_last_error(); every other
 *     key reads either its exact value or TL_ECORRUPT, never a wrong value; a full iterator
 *     scan reports TL_ECORRUPT naming the file instead of ending quietly.
 * (b) A byte flipped inside a record in the middle of the .wal segment (many whole records
 *     after it): in a key, in the checksum, in the low or the high byte of the length (which
 *     then points past the end of the file): tl_db_open fails with TL_ECORRUPT and the message
 *     names the .wal file; it never passes for a torn tail, which would drop the records after.
 * (c) Torn tails: the .wal cut 3 bytes short, cut inside the last record's header, and cut
 *     exactly before the last record: tl_db_open succeeds, every key but the last-written one
 *     reads its exact value and the last one is absent; writes after that recovery survive a
 *     second close + reopen.
 *
 * The record layout used to aim the flip and the cuts is the one documented in wal.h: a
 * 24-byte header, then records of [crc 4][length 4][seq 8][varint key length][key][value].
 *
 * Usage: test_corruption_db [seed]; the seed also comes from $TALLY_SEED, else from the time.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tallystore.h"
#include "testutil.h"

#define WAL_HEADER 24

static uint64_t seed;
static const char *part = "";

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL seed=%" PRIu64 " %s: ", seed, part);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The largest file in dir whose name ends with ext, its name in name; also counts them. */
static int find_file(const char *dir, const char *ext, char *name, size_t cap, off_t *size)
{
    DIR *d = opendir(dir);
    if (!d)
        fail("opendir %s: %s", dir, strerror(errno));
    int count = 0;
    off_t best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name), el = strlen(ext);
        if (n <= el || strcmp(e->d_name + n - el, ext) != 0)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            fail("stat %s: %s", path, strerror(errno));
        count++;
        if (st.st_size > best) {
            best = st.st_size;
            snprintf(name, cap, "%s", e->d_name);
            *size = st.st_size;
        }
    }
    closedir(d);
    return count;
}

static void read_file(const char *path, unsigned char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        fail("open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail("fstat %s: %s", path, strerror(errno));
    *len = (size_t)st.st_size;
    *buf = malloc(*len + 1);
    if (!*buf)
        fail("out of memory");
    if (pread(fd, *buf, *len, 0) != (ssize_t)*len)
        fail("read %s: %s", path, strerror(errno));
    close(fd);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        fail("open %s: %s", path, strerror(errno));
    unsigned char c;
    if (pread(fd, &c, 1, off) != 1)
        fail("read %s at %lld: %s", path, (long long)off, strerror(errno));
    c ^= 0xff;
    if (pwrite(fd, &c, 1, off) != 1)
        fail("write %s at %lld: %s", path, (long long)off, strerror(errno));
    close(fd);
}

/* Offsets of the records of a WAL segment (wal.h layout); returns their count, or -1 if the
 * file does not parse to its exact end. */
static int wal_records(const unsigned char *buf, size_t len, size_t *offs, int cap)
{
    if (len < WAL_HEADER || memcmp(buf, "TALLYWAL", 8) != 0)
        return -1;
    size_t off = WAL_HEADER;
    int n = 0;
    while (off + 8 <= len) {
        uint32_t rl = (uint32_t)buf[off + 4] | (uint32_t)buf[off + 5] << 8 |
                      (uint32_t)buf[off + 6] << 16 | (uint32_t)buf[off + 7] << 24;
        if (off + 8 + rl > len || rl < 9)
            return -1;
        if (n < cap)
            offs[n] = off;
        n++;
        off += 8 + rl;
    }
    return off == len ? n : -1;
}

static struct tl_options opts(void)
{
    struct tl_options o;
    tl_options_init(&o);
    o.block_cache_bytes = 1 << 20;
    return o;
}

/* ---- (d) the directory lock ---- */

struct lock_report {
    int rc;
    int got;
    char msg[1024];
};

static void read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            fail("reading from the other process: %s", n < 0 ? strerror(errno) : "end of file");
        p += n;
        len -= (size_t)n;
    }
}

static void test_lock(void)
{
    part = "(d) lock";
    char *dir = test_tmpdir("lock");
    int to_child[2], to_parent[2];
    if (pipe(to_child) != 0 || pipe(to_parent) != 0)
        fail("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    /* The child is forked before this process opens anything, so it shares no io_uring and
     * no thread with the engine in the parent. */
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        char c;
        struct lock_report r = {0};
        read_all(to_child[0], &c, 1);
        struct tl_options o = opts();
        tl_db *db = NULL;
        r.rc = tl_db_open(dir, &o, &db);
        snprintf(r.msg, sizeof r.msg, "%s", tl_last_error());
        if (r.rc == 0)
            tl_db_close(db);
        if (write(to_parent[1], &r, sizeof r) != (ssize_t)sizeof r)
            _exit(2);
        /* Now the parent has closed it: this process may open it. */
        read_all(to_child[0], &c, 1);
        memset(&r, 0, sizeof r);
        r.rc = tl_db_open(dir, &o, &db);
        if (r.rc == 0) {
            struct tl_val v = {0};
            int g = tl_db_get(db, "lock-key", 8, &v);
            r.got = g == 1 && v.type == TL_VAL_INT ? (int)v.i : -1000 + g;
            tl_val_clear(&v);
            tl_db_close(db);
        }
        snprintf(r.msg, sizeof r.msg, "%s", tl_last_error());
        if (write(to_parent[1], &r, sizeof r) != (ssize_t)sizeof r)
            _exit(2);
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    struct tl_options o = opts();
    tl_db *db = NULL;
    CHECK_OK(tl_db_open(dir, &o, &db));
    CHECK_OK(tl_db_put_int(db, "lock-key", 8, 42, 0, NULL));
    if (write(to_child[1], "o", 1) != 1)
        fail("write: %s", strerror(errno));
    struct lock_report r;
    read_all(to_parent[0], &r, sizeof r);
    if (r.rc != TL_ELOCKED)
        fail("a second process opening %s while it is open got %d (%s), expected TL_ELOCKED "
             "(%d); message: %s",
             dir, r.rc, tl_strerror(r.rc), TL_ELOCKED, r.msg);
    if (!strstr(r.msg, base_name(dir)))
        fail("the TL_ELOCKED message does not name the directory %s: \"%s\"", dir, r.msg);
    printf("(d) second process: TL_ELOCKED: %s\n", r.msg);
    /* The first process is unaffected. */
    int64_t res = 0;
    CHECK_OK(tl_db_incr(db, "lock-key", 8, 1, &res, NULL));
    CHECK_EQ_INT(res, 43);
    CHECK_OK(tl_db_close(db));
    if (write(to_child[1], "c", 1) != 1)
        fail("write: %s", strerror(errno));
    read_all(to_parent[0], &r, sizeof r);
    if (r.rc != 0 || r.got != 43)
        fail("after the first process closed, the second one's tl_db_open returned %d (%s) and "
             "read lock-key = %d, expected 0 and 43; message: %s",
             r.rc, tl_strerror(r.rc), r.got, r.msg);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the second process failed (status 0x%x)", status);
    close(to_child[1]);
    close(to_parent[0]);
    printf("(d) ok: lock held while open, released by close\n");
    test_rmdir(dir);
    free(dir);
}

/* ---- (a) a flipped byte in an SSTable ---- */

#define SST_KEYS 2000

static size_t sst_key(int i, char *buf)
{
    return (size_t)snprintf(buf, 32, "key%06d", i);
}

/* A value that is not a number, from i alone. */
static size_t sst_value(int i, char *buf)
{
    uint64_t s = (uint64_t)i * 7919 + seed;
    buf[0] = 'v';
    for (int j = 1; j < 61; j++)
        buf[j] = (char)(0x21 + test_rand(&s) % 90);
    return 61;
}

static void test_sst_flip(void)
{
    part = "(a) sst";
    char *dir = test_tmpdir("corrupt-sst");
    struct tl_options o = opts();
    o.background_compaction = false;
    tl_db *db = NULL;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32], v[64];
    for (int i = 0; i < SST_KEYS; i++) {
        size_t vl = sst_value(i, v);
        CHECK_OK(tl_db_put(db, k, sst_key(i, k), v, vl, 0, NULL));
    }
    CHECK_OK(tl_db_flush(db));
    CHECK_OK(tl_db_close(db));

    char name[256], path[4400];
    off_t size = 0;
    int n = find_file(dir, ".sst", name, sizeof name, &size);
    if (n != 1)
        fail("expected exactly one .sst file after one flush, found %d", n);
    if (size < 1000)
        fail("%s is only %lld bytes", name, (long long)size);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    flip_byte(path, 100);

    int rc = tl_db_open(dir, &o, &db);
    if (rc == TL_ECORRUPT && strstr(tl_last_error(), name)) {
        /* Verifying every block at open is allowed too. */
        printf("(a) ok: tl_db_open found the damage: %s\n", tl_last_error());
        test_rmdir(dir);
        free(dir);
        return;
    }
    if (rc != 0)
        fail("tl_db_open after flipping byte 100 of %s returned %d (%s): %s", name, rc,
             tl_strerror(rc), tl_last_error());

    int corrupt = 0, intact = 0;
    for (int i = 0; i < SST_KEYS; i++) {
        struct tl_val val = {0};
        size_t kl = sst_key(i, k), vl = sst_value(i, v);
        rc = tl_db_get(db, k, kl, &val);
        if (rc == TL_ECORRUPT) {
            if (!strstr(tl_last_error(), name))
                fail("tl_db_get(%s) returned TL_ECORRUPT but the message does not name %s: %s", k,
                     name, tl_last_error());
            corrupt++;
        } else if (rc == 1 && val.type == TL_VAL_BYTES && val.len == vl &&
                   memcmp(val.bytes, v, vl) == 0 && val.expire_ms == 0) {
            intact++;
        } else {
            fail("tl_db_get(%s) returned %d (type %d, len %zu): expected its exact value or "
                 "TL_ECORRUPT; message: %s",
                 k, rc, (int)val.type, val.len, tl_last_error());
        }
        if (i == 0 && rc != TL_ECORRUPT)
            fail("tl_db_get(%s), the first key, in the damaged first block of %s, returned %d, "
                 "expected TL_ECORRUPT",
                 k, name, rc);
        tl_val_clear(&val);
    }

    tl_iter *it = NULL;
    int irc = tl_iter_new(db, &it);
    int scanned = 0;
    if (irc == 0) {
        irc = tl_iter_seek(it, "", 0);
        while (irc == 0 && tl_iter_valid(it)) {
            struct tl_val val = {0};
            irc = tl_iter_value(it, &val);
            tl_val_clear(&val);
            if (irc == 0) {
                scanned++;
                irc = tl_iter_next(it);
            }
        }
        tl_iter_free(it);
    }
    if (irc != TL_ECORRUPT)
        fail("a full scan over the damaged %s ended with %d after %d keys, expected "
             "TL_ECORRUPT",
             name, irc, scanned);
    if (!strstr(tl_last_error(), name))
        fail("the scan's TL_ECORRUPT message does not name %s: %s", name, tl_last_error());
    printf("(a) ok: %d keys TL_ECORRUPT, %d intact; scan: %s\n", corrupt, intact, tl_last_error());
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);
}

/* ---- (b) a flipped byte in the middle of the WAL ---- */

enum flip_at { FLIP_KEY, FLIP_CRC, FLIP_LEN_LOW, FLIP_LEN_HIGH };

static void test_wal_flip(enum flip_at where)
{
    static const char *names[] = {"a key byte", "the checksum", "the length's low byte",
                                  "the length's high byte"};
    part = "(b) wal";
    char *dir = test_tmpdir("corrupt-wal");
    struct tl_options o = opts();
    tl_db *db = NULL;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32], v[64];
    for (int i = 0; i < 1000; i++) {
        size_t vl = sst_value(i, v);
        CHECK_OK(tl_db_put(db, k, sst_key(i, k), v, vl, 0, NULL));
    }
    CHECK_OK(tl_db_close(db));

    char name[256], path[4400];
    off_t size = 0;
    if (find_file(dir, ".wal", name, sizeof name, &size) < 1)
        fail("no .wal file in %s", dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *buf;
    size_t len;
    read_file(path, &buf, &len);
    static size_t offs[4096];
    int nrec = wal_records(buf, len, offs, 4096);
    if (nrec < 1000)
        fail("%s (%zu bytes) does not parse as the 1000 records written (wal.h layout): got %d",
             name, len, nrec);
    /* In the middle record: its first key byte (after crc, length, seq and the one-byte varint
     * key length), its checksum, or its length field. */
    off_t rec = (off_t)offs[nrec / 2];
    off_t off = where == FLIP_KEY       ? rec + 8 + 8 + 1
                : where == FLIP_CRC     ? rec + 1
                : where == FLIP_LEN_LOW ? rec + 4
                                        : rec + 7;
    free(buf);
    flip_byte(path, off);

    int rc = tl_db_open(dir, &o, &db);
    if (rc == 0)
        tl_db_close(db);
    if (rc != TL_ECORRUPT)
        fail("tl_db_open after flipping %s of record %d of %d in %s (byte %lld) returned %d "
             "(%s), expected TL_ECORRUPT; message: %s",
             names[where], nrec / 2, nrec, name, (long long)off, rc, tl_strerror(rc),
             tl_last_error());
    if (!strstr(tl_last_error(), name))
        fail("the TL_ECORRUPT message does not name %s: %s", name, tl_last_error());
    printf("(b) ok: flipped %s: %s\n", names[where], tl_last_error());
    test_rmdir(dir);
    free(dir);
}

/* ---- (c) torn tails ---- */

#define TORN_KEYS 500

static void check_torn(tl_db *db, int intact, bool rewritten, const char *when)
{
    char k[32], v[64];
    for (int i = 0; i < TORN_KEYS; i++) {
        size_t kl = (size_t)snprintf(k, sizeof k, "torn%05d", i);
        size_t vl = (size_t)snprintf(v, sizeof v, "value-%d", i);
        if (i >= intact && rewritten)
            vl = (size_t)snprintf(v, sizeof v, "again-%d", i);
        bool want = i < intact || rewritten;
        struct tl_val val = {0};
        int rc = tl_db_get(db, k, kl, &val);
        if (rc != (int)want ||
            (want && (val.type != TL_VAL_BYTES || val.len != vl || memcmp(val.bytes, v, vl))))
            fail("%s: tl_db_get(%s) returned %d (type %d, \"%.*s\"), expected %s%s (%s)", when, k,
                 rc, (int)val.type, rc == 1 && val.type == TL_VAL_BYTES ? (int)val.len : 0,
                 rc == 1 && val.type == TL_VAL_BYTES ? val.bytes : "", want ? "" : "absent",
                 want ? v : "", tl_last_error());
        tl_val_clear(&val);
    }
}

enum cut { CUT_3_BYTES, CUT_IN_HEADER, CUT_WHOLE_RECORD };

static void test_torn_tail(enum cut how)
{
    static const char *names[] = {"3 bytes short", "inside the last record's header",
                                  "just before the last record"};
    part = "(c) torn tail";
    char *dir = test_tmpdir("torn");
    struct tl_options o = opts();
    tl_db *db = NULL;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32], v[64];
    for (int i = 0; i < TORN_KEYS; i++) {
        size_t kl = (size_t)snprintf(k, sizeof k, "torn%05d", i);
        size_t vl = (size_t)snprintf(v, sizeof v, "value-%d", i);
        CHECK_OK(tl_db_put(db, k, kl, v, vl, 0, NULL));
    }
    CHECK_OK(tl_db_close(db));

    char name[256], path[4400];
    off_t size = 0;
    if (find_file(dir, ".wal", name, sizeof name, &size) < 1)
        fail("no .wal file in %s", dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *buf;
    size_t len;
    read_file(path, &buf, &len);
    static size_t offs[4096];
    int nrec = wal_records(buf, len, offs, 4096);
    if (nrec < TORN_KEYS)
        fail("%s (%zu bytes) does not parse as the %d records written: got %d", name, len,
             TORN_KEYS, nrec);
    size_t last = offs[nrec - 1];
    snprintf(k, sizeof k, "torn%05d", TORN_KEYS - 1);
    if (buf[last + 16] != 9 || memcmp(buf + last + 17, k, 9) != 0)
        fail("the last record of %s is not the put of %s", name, k);
    free(buf);
    off_t cut = how == CUT_3_BYTES     ? (off_t)len - 3
                : how == CUT_IN_HEADER ? (off_t)last + 5
                                       : (off_t)last;
    if (truncate(path, cut) != 0)
        fail("truncate %s: %s", path, strerror(errno));

    int rc = tl_db_open(dir, &o, &db);
    if (rc != 0)
        fail("tl_db_open after cutting %s %s (to %lld of %zu bytes) returned %d (%s): %s", name,
             names[how], (long long)cut, len, rc, tl_strerror(rc), tl_last_error());
    check_torn(db, TORN_KEYS - 1, false, names[how]);

    /* Writes after the recovery, and a second recovery. */
    snprintf(k, sizeof k, "torn%05d", TORN_KEYS - 1);
    snprintf(v, sizeof v, "again-%d", TORN_KEYS - 1);
    CHECK_OK(tl_db_put(db, k, 9, v, strlen(v), 0, NULL));
    CHECK_OK(tl_db_put_int(db, "after-tail", 10, 7, 0, NULL));
    CHECK_OK(tl_db_close(db));
    CHECK_OK(tl_db_open(dir, &o, &db));
    check_torn(db, TORN_KEYS - 1, true, "after writing and reopening again");
    struct tl_val val = {0};
    CHECK_EQ_INT(tl_db_get(db, "after-tail", 10, &val), 1);
    CHECK_EQ_INT(val.type, TL_VAL_INT);
    CHECK_EQ_INT(val.i, 7);
    CHECK_OK(tl_db_close(db));
    printf("(c) ok: cut %s: %d keys intact, the last one gone, later writes kept\n", names[how],
           TORN_KEYS - 1);
    test_rmdir(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    test_require_uring();
    const char *env = getenv("TALLY_SEED");
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    else if (env && *env)
        seed = strtoull(env, NULL, 0);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("test_corruption_db: seed=%" PRIu64 "\n", seed);
    fflush(stdout);

    test_lock(); /* first: it forks, and this process has no engine state yet */
    test_sst_flip();
    test_wal_flip(FLIP_KEY);
    test_wal_flip(FLIP_CRC);
    test_wal_flip(FLIP_LEN_LOW);
    test_wal_flip(FLIP_LEN_HIGH);
    test_torn_tail(CUT_3_BYTES);
    test_torn_tail(CUT_IN_HEADER);
    test_torn_tail(CUT_WHOLE_RECORD);
    printf("ok: seed=%" PRIu64 "\n", seed);
    return 0;
}
