/*
 * test_bloom.c - the SSTable Bloom filter (storage/bloom.c): exact size and probe count, no
 * false negatives, a false positive rate under 2% at 10 bits a key over 100k absent keys, the
 * safe answers for an empty filter, a malformed one and one with an unknown probe count, a
 * filter of the earlier format (written by the previous build) still read, and each key's bits
 * confined to one 64-byte block.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "hash.h"
#include "testutil.h"

#define N_KEYS       100000
#define N_ABSENT     100000
#define BITS_PER_KEY 10

static uint64_t key_hash(const char *fmt, int i)
{
    char k[32];
    int n = snprintf(k, sizeof k, fmt, i);
    return tl_hash64(k, (size_t)n);
}

static void test_bloom_fp_rate_and_no_false_negatives(void)
{
    uint64_t *hashes = malloc(N_KEYS * sizeof *hashes);
    CHECK(hashes != NULL);
    for (int i = 0; i < N_KEYS; i++)
        hashes[i] = key_hash("key%08d", i);
    uint8_t *f;
    size_t len;
    CHECK_OK(tl_bloom_build(hashes, N_KEYS, BITS_PER_KEY, &f, &len));
    /* 1,000,000 bits in 512-bit blocks: 1954 blocks. */
    CHECK_EQ_INT(len, 1954 * 64 + 1);
    CHECK_EQ_INT(f[len - 1], 0x80 | 7); /* format 2, round(10 * 0.69) probes */
    for (int i = 0; i < N_KEYS; i++)
        CHECK(tl_bloom_may_contain(f, len, hashes[i]));
    int fp = 0;
    for (int i = 0; i < N_ABSENT; i++)
        fp += tl_bloom_may_contain(f, len, key_hash("absent%08d", i));
    printf("false positives: %d of %d (%.3f%%)\n", fp, N_ABSENT, 100.0 * fp / N_ABSENT);
    CHECK(fp < N_ABSENT / 50);
    CHECK(fp > 0); /* a filter that never says "maybe" is not probing what it set */
    free(f);
    free(hashes);
}

static void test_bloom_sizes_and_probes(void)
{
    uint64_t h[3] = {key_hash("a%d", 1), key_hash("a%d", 2), key_hash("a%d", 3)};
    uint8_t *f;
    size_t len;
    /* An empty filter is one block, all clear: nothing may be in it. */
    CHECK_OK(tl_bloom_build(h, 0, BITS_PER_KEY, &f, &len));
    CHECK_EQ_INT(len, 65);
    CHECK_EQ_INT(f[64], 0x80 | 7);
    for (int i = 0; i < 1000; i++)
        CHECK(!tl_bloom_may_contain(f, len, key_hash("x%d", i)));
    free(f);
    /* 3 keys x 10 bits = 30 bits, raised to a block. */
    CHECK_OK(tl_bloom_build(h, 3, BITS_PER_KEY, &f, &len));
    CHECK_EQ_INT(len, 65);
    for (int i = 0; i < 3; i++)
        CHECK(tl_bloom_may_contain(f, len, h[i]));
    free(f);
    /* Whole blocks: 100 keys x 7 bits = 700 bits, 2 blocks. */
    uint64_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = key_hash("m%d", i);
    CHECK_OK(tl_bloom_build(many, 100, 7, &f, &len));
    CHECK_EQ_INT(len, 129);
    CHECK_EQ_INT(f[128], 0x80 | 5); /* round(4.83) */
    free(f);
    /* k is clamped to 1..30. */
    CHECK_OK(tl_bloom_build(many, 100, 1, &f, &len));
    CHECK_EQ_INT(f[len - 1], 0x80 | 1);
    free(f);
    CHECK_OK(tl_bloom_build(many, 100, 100, &f, &len));
    CHECK_EQ_INT(len, 20 * 64 + 1); /* 10,000 bits: 20 blocks */
    CHECK_EQ_INT(f[len - 1], 0x80 | 30);
    for (int i = 0; i < 100; i++)
        CHECK(tl_bloom_may_contain(f, len, many[i]));
    free(f);
}

/* Every bit a key sets lies in one 64-byte block. */
static void test_bloom_bits_in_one_block(void)
{
    uint64_t *h = malloc(4096 * sizeof *h);
    CHECK(h != NULL);
    for (int i = 0; i < 4096; i++)
        h[i] = key_hash("b%d", i);
    uint8_t *f;
    size_t len;
    /* 4096 keys at 10 bits: 40,960 bits, 80 blocks. A copy of the filter with every block but
     * one cleared answers "maybe" only for keys whose bits lie in that block. */
    CHECK_OK(tl_bloom_build(h, 4096, 10, &f, &len));
    CHECK_EQ_INT(len, 80 * 64 + 1);
    size_t nblocks = (len - 1) / 64;
    uint8_t *one = malloc(len);
    CHECK(one != NULL);
    /* Every key is "maybe" in exactly its own block's copy: summed over the blocks, each key
     * counts once (a key answered by two copies would have bits in two blocks). */
    int total = 0, blocks_seen = 0;
    for (size_t b = 0; b < nblocks; b++) {
        memset(one, 0, len);
        memcpy(one + b * 64, f + b * 64, 64);
        one[len - 1] = f[len - 1];
        int here = 0;
        for (int i = 0; i < 4096; i++)
            here += tl_bloom_may_contain(one, len, h[i]);
        total += here;
        blocks_seen += here > 0;
    }
    CHECK_EQ_INT(total, 4096);
    CHECK(blocks_seen > (int)nblocks / 2);
    free(one);
    free(f);
    free(h);
}

/* A format 1 filter, written by the build before format 2 over the keys "old0".."old63" at 10
 * bits a key: SSTables written then must keep their filters. */
static const uint8_t format1_filter[] = {
    0x99, 0x92, 0x02, 0x86, 0xa0, 0x90, 0x7c, 0x5b, 0x68, 0x3d, 0xa2, 0xc5, 0x0b, 0x6d,
    0xbc, 0xfb, 0x52, 0x61, 0x4e, 0x0d, 0xd3, 0xbc, 0xbb, 0x41, 0xcb, 0x9d, 0xfa, 0x4f,
    0x80, 0x88, 0x32, 0xbb, 0xb8, 0xdc, 0x6a, 0xb5, 0xc5, 0x08, 0x6f, 0x2f, 0x64, 0x66,
    0x74, 0x89, 0x89, 0x17, 0x1b, 0x3e, 0x27, 0x88, 0x9c, 0x87, 0x27, 0x6d, 0x13, 0x80,
    0xdb, 0xa2, 0x47, 0xcd, 0xfd, 0xac, 0xbd, 0x52, 0x77, 0xa2, 0xea, 0xf2, 0xe4, 0x13,
    0x7d, 0x0e, 0x57, 0xad, 0x06, 0x77, 0x4e, 0xa2, 0x77, 0xa8, 0x07,
};

static void test_bloom_reads_format1(void)
{
    size_t len = sizeof format1_filter;
    CHECK_EQ_INT(len, 81);
    CHECK_EQ_INT(format1_filter[80], 7);
    for (int i = 0; i < 64; i++)
        CHECK(tl_bloom_may_contain(format1_filter, len, key_hash("old%d", i)));
    int fp = 0;
    for (int i = 0; i < 10000; i++)
        fp += tl_bloom_may_contain(format1_filter, len, key_hash("new%d", i));
    CHECK(fp < 10000 / 20); /* about 0.8% for a filter this small; a wrong reading is ~100% */
}

static void test_bloom_unknown_formats_say_maybe(void)
{
    uint8_t f[17];
    memset(f, 0, sizeof f);
    /* k over 30: a future format; every key may be present. */
    f[16] = 31;
    CHECK(tl_bloom_may_contain(f, sizeof f, key_hash("k%d", 1)));
    f[16] = 255;
    CHECK(tl_bloom_may_contain(f, sizeof f, key_hash("k%d", 2)));
    f[16] = 0;
    CHECK(tl_bloom_may_contain(f, sizeof f, key_hash("k%d", 3)));
    /* Well formed, all clear: definitely absent. */
    f[16] = 6;
    CHECK(!tl_bloom_may_contain(f, sizeof f, key_hash("k%d", 4)));
    /* Shorter than the minimum: maybe. */
    CHECK(tl_bloom_may_contain(f, 8, key_hash("k%d", 5)));
    CHECK(tl_bloom_may_contain(f, 0, key_hash("k%d", 6)));
    /* Format 2 that is not whole blocks, or with a probe count out of range: maybe. */
    f[16] = 0x80 | 6;
    CHECK(tl_bloom_may_contain(f, sizeof f, key_hash("k%d", 7)));
    uint8_t g[65];
    memset(g, 0, sizeof g);
    g[64] = 0x80 | 6;
    CHECK(!tl_bloom_may_contain(g, sizeof g, key_hash("k%d", 8)));
    g[64] = 0x80 | 31;
    CHECK(tl_bloom_may_contain(g, sizeof g, key_hash("k%d", 9)));
    g[64] = 0x80;
    CHECK(tl_bloom_may_contain(g, sizeof g, key_hash("k%d", 10)));
}

int main(void)
{
    test_bloom_fp_rate_and_no_false_negatives();
    test_bloom_sizes_and_probes();
    test_bloom_unknown_formats_say_maybe();
    test_bloom_bits_in_one_block();
    test_bloom_reads_format1();
    printf("test_bloom: ok\n");
    return 0;
}
