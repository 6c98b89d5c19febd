/*
 * fuzz_seeds.c - writes the seed corpora of the on-disk readers' fuzz targets with the engine's
 * own writers: tables (uncompressed, LZ4 and Zstd blocks, with and without a Bloom filter,
 * empty), WAL segments and manifests, each whole and also torn and corrupt.
 *
 *     make tests/fuzz_seeds && tests/fuzz_seeds SRCDIR/tests
 *
 * writes SRCDIR/tests/fuzz_{sst,wal,manifest}_corpus/. The files are kept small (a few KiB)
 * so that libFuzzer mutates them quickly. The WAL segment is number 7 and the manifest is read
 * as MANIFEST-000005 by the targets; the names of the seed files say what each one is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest.h"
#include "record.h"
#include "sst.h"
#include "testutil.h"
#include "wal.h"

#define SEED_PATH_BYTES 4096
#define SEED_MAX_BYTES  (64u << 10)
/* Entries of the tables and records of the segment: enough for a few blocks. */
#define SEED_ENTRIES     48
#define SEED_WAL_RECORDS 24
/* Small blocks make several blocks; large ones several restart points in a block. */
#define SEED_SMALL_BLOCK_BYTES 256
#define SEED_LARGE_BLOCK_BYTES 1024
#define SEED_BLOOM_BITS        10
#define SEED_ZSTD_LEVEL        3
/* Numbers the fuzz targets give their scratch files. */
#define SEED_WAL_NUMBER 7

static char *tmp;
static const char *out_dir;

/* Reads a whole (small) file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    uint8_t *buf = malloc(SEED_MAX_BYTES);
    CHECK(buf != NULL);
    ssize_t n = read(fd, buf, SEED_MAX_BYTES);
    CHECK(n >= 0 && (size_t)n < SEED_MAX_BYTES);
    close(fd);
    *len = (size_t)n;
    return buf;
}

/* Writes len bytes of buf as corpus/name. */
static void emit(const char *corpus, const char *name, const uint8_t *buf, size_t len)
{
    char path[SEED_PATH_BYTES];
    snprintf(path, sizeof path, "%s/%s", out_dir, corpus);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, corpus, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(len == 0 || fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
    printf("%s/%s: %zu bytes\n", corpus, name, len);
}

/* Emits a file whole, then variants: cut at `cut` bytes, and with byte `flip` inverted. */
static void emit_variants(const char *corpus, const char *name, const char *path, size_t cut,
                          size_t flip)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    char variant[SEED_PATH_BYTES];
    snprintf(variant, sizeof variant, "%s.whole", name);
    emit(corpus, variant, buf, len);
    if (cut && cut < len) {
        snprintf(variant, sizeof variant, "%s.torn", name);
        emit(corpus, variant, buf, cut);
    }
    if (flip && flip < len) {
        buf[flip] ^= 0xff;
        snprintf(variant, sizeof variant, "%s.corrupt", name);
        emit(corpus, variant, buf, len);
    }
    free(buf);
}

/* Entry value i: every kind, with and without expiry; byte values repeat so blocks compress. */
static size_t value_of(int i, uint8_t *out)
{
    static const uint8_t text[] = "tally-counter-value-tally-counter-value";
    struct tl_record r = {.kind = (uint8_t)(1 + i % 6)};
    r.has_expiry = r.kind == TL_KIND_EXPIRE || i % 4 == 1;
    r.expire_ms = r.has_expiry ? 1700000000000 + i : 0;
    r.i = (i % 3 ? 1 : -1) * (int64_t)i * 1000003;
    r.tag = (uint8_t)(1 + i % 250);
    r.bytes = text;
    r.len = (size_t)(i % (int)sizeof text);
    return tl_record_encode(&r, out);
}

static size_t key_of(int i, char *out)
{
    return (size_t)sprintf(out, "user:%04d:signups", i);
}

static void table(const char *name, enum tl_compression c, size_t block_bytes, int bloom_bits,
                  int n)
{
    char path[SEED_PATH_BYTES];
    snprintf(path, sizeof path, "%s/%s.sst", tmp, name);
    struct tl_sst_builder_options o = {.block_size_bytes = block_bytes,
                                       .bloom_bits_per_key = bloom_bits,
                                       .compression = c,
                                       .zstd_level = SEED_ZSTD_LEVEL};
    struct tl_sst_builder *b;
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    for (int i = 0; i < n; i++) {
        char k[32];
        uint8_t v[TL_RECORD_HEADER_MAX + 64];
        size_t klen = key_of(i, k);
        CHECK_OK(tl_sst_builder_add(b, k, klen, v, value_of(i, v)));
    }
    struct tl_sst_props p;
    CHECK_OK(tl_sst_builder_finish(b, &p));
    CHECK_OK(tl_sst_verify(path, NULL, NULL));
    /* Torn inside the index, corrupt inside the first data block. */
    emit_variants("fuzz_sst_corpus", name, path, n ? (size_t)p.file_size - 60 : 0, n ? 20 : 0);
    tl_sst_props_free(&p);
}

static int count_record(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                        const struct tl_record *r)
{
    (void)seq, (void)key, (void)klen, (void)r;
    (*(int *)arg)++;
    return 0;
}

static void wal_segment(void)
{
    struct tl_wal *w;
    CHECK_OK(tl_wal_open(tmp, SEED_WAL_NUMBER, 1, TL_FSYNC_NO, &w));
    for (int i = 0; i < SEED_WAL_RECORDS; i++) {
        char k[32];
        uint8_t v[TL_RECORD_HEADER_MAX + 64];
        size_t klen = key_of(i % 7, k);
        struct tl_record r;
        CHECK_OK(tl_record_decode(v, value_of(i, v), &r));
        uint64_t seq;
        CHECK_OK(tl_wal_append(w, k, klen, &r, &seq));
    }
    CHECK_OK(tl_wal_close(w));
    char path[SEED_PATH_BYTES];
    tl_wal_path(path, sizeof path, tmp, SEED_WAL_NUMBER);
    int n = 0;
    uint64_t last = 0;
    CHECK_OK(tl_wal_replay(path, false, count_record, &n, &last));
    CHECK_EQ_INT(n, SEED_WAL_RECORDS);

    size_t len;
    uint8_t *buf = slurp(path, &len);
    emit("fuzz_wal_corpus", "segment.whole", buf, len);
    emit("fuzz_wal_corpus", "segment.header-only", buf, TL_WAL_HEADER_BYTES);
    emit("fuzz_wal_corpus", "segment.torn-header", buf, TL_WAL_HEADER_BYTES / 2);
    emit("fuzz_wal_corpus", "segment.torn", buf, len - 7);
    /* A zero-filled tail, as a crash after the file grew can leave. */
    uint8_t *zeros = calloc(len + 64, 1);
    CHECK(zeros != NULL);
    memcpy(zeros, buf, len);
    emit("fuzz_wal_corpus", "segment.zero-tail", zeros, len + 64);
    free(zeros);
    /* A flipped byte in the middle record: damage with valid records after it. */
    buf[len / 2] ^= 0x5a;
    emit("fuzz_wal_corpus", "segment.corrupt-middle", buf, len);
    /* A flipped byte in the last record: a torn tail. */
    buf[len / 2] ^= 0x5a;
    buf[len - 3] ^= 0x5a;
    emit("fuzz_wal_corpus", "segment.corrupt-last", buf, len);
    free(buf);
}

static void manifest(void)
{
    char dir[SEED_PATH_BYTES], path[2 * SEED_PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    CHECK(mkdir(dir, 0755) == 0);
    struct tl_manifest *m;
    struct tl_version_edit state;
    CHECK_OK(tl_manifest_open(dir, &m, &state));
    tl_edit_free(&state);
    for (int i = 0; i < 4; i++) {
        struct tl_version_edit e;
        tl_edit_init(&e);
        char lo[32], hi[32];
        struct tl_file_meta f = {.level = i % 2,
                                 .number = (uint64_t)(10 + i),
                                 .size_bytes = 4096u * (unsigned)(i + 1),
                                 .entries = 100u * (unsigned)(i + 1),
                                 .raw_bytes = 5000u * (unsigned)(i + 1),
                                 .smallest = (uint8_t *)lo,
                                 .smallest_len = key_of(i * 10, lo),
                                 .largest = (uint8_t *)hi,
                                 .largest_len = key_of(i * 10 + 9, hi),
                                 .expiring_entries = (uint64_t)i,
                                 .expire_p50_ms = i ? 1700000000000 + i : 0};
        CHECK_OK(tl_edit_add_file(&e, &f));
        if (i == 3)
            CHECK_OK(tl_edit_delete_file(&e, 0, 10));
        e.has_log_number = e.has_next_file = e.has_last_seq = true;
        e.log_number = (uint64_t)(3 + i);
        e.next_file_number = (uint64_t)(20 + i);
        e.last_seq = (uint64_t)(1000 * (i + 1));
        CHECK_OK(tl_manifest_log(m, &e));
        tl_edit_free(&e);
    }
    snprintf(path, sizeof path, "%s/%s", dir, tl_manifest_name(m));
    tl_manifest_close(m);
    /* Torn inside the last edit, corrupt inside the first edit after the snapshot. */
    size_t len;
    free(slurp(path, &len));
    emit_variants("fuzz_manifest_corpus", "edits", path, len - 5, len / 2);

    CHECK_OK(tl_manifest_open(dir, &m, &state));
    tl_edit_free(&state);
    snprintf(path, sizeof path, "%s/%s", dir, tl_manifest_name(m));
    tl_manifest_close(m);
    emit_variants("fuzz_manifest_corpus", "snapshot", path, 0, 0);
    /* The fuzz target also reads each input as CURRENT. */
    static const char current[] = "MANIFEST-000005\n";
    emit("fuzz_manifest_corpus", "current", (const uint8_t *)current, strlen(current));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SRCDIR/tests\n", argv[0]);
        return 2;
    }
    test_require_uring();
    out_dir = argv[1];
    tmp = test_tmpdir("fuzz-seeds");
    table("none", TL_COMPRESS_NONE, SEED_SMALL_BLOCK_BYTES, SEED_BLOOM_BITS, SEED_ENTRIES);
    table("none-restarts", TL_COMPRESS_NONE, SEED_LARGE_BLOCK_BYTES, SEED_BLOOM_BITS, SEED_ENTRIES);
    table("lz4", TL_COMPRESS_LZ4, SEED_LARGE_BLOCK_BYTES, SEED_BLOOM_BITS, SEED_ENTRIES);
    table("zstd", TL_COMPRESS_ZSTD, SEED_LARGE_BLOCK_BYTES, SEED_BLOOM_BITS, SEED_ENTRIES);
    table("nofilter", TL_COMPRESS_LZ4, SEED_SMALL_BLOCK_BYTES, 0, SEED_ENTRIES / 4);
    table("empty", TL_COMPRESS_NONE, SEED_SMALL_BLOCK_BYTES, SEED_BLOOM_BITS, 0);
    wal_segment();
    manifest();
    test_rmdir(tmp);
    free(tmp);
    return 0;
}
