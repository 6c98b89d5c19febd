/*
 * test_bloom.c - the SSTable Bloom filter (storage/bloom.c): exact size and probe count, no
 * false negatives, a false positive rate under 2% at 10 bits a key over 100k absent keys, and
 * the safe answers for an empty filter, a malformed one and one with an unknown probe count.
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
    CHECK_EQ_INT(len, N_KEYS * BITS_PER_KEY / 8 + 1);
    CHECK_EQ_INT(f[len - 1], 7); /* round(10 * 0.69) */
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
    /* An empty filter has the minimum 64 bits, all clear: nothing may be in it. */
    CHECK_OK(tl_bloom_build(h, 0, BITS_PER_KEY, &f, &len));
    CHECK_EQ_INT(len, 9);
    CHECK_EQ_INT(f[8], 7);
    for (int i = 0; i < 1000; i++)
        CHECK(!tl_bloom_may_contain(f, len, key_hash("x%d", i)));
    free(f);
    /* 3 keys x 10 bits = 30 bits, raised to 64. */
    CHECK_OK(tl_bloom_build(h, 3, BITS_PER_KEY, &f, &len));
    CHECK_EQ_INT(len, 9);
    for (int i = 0; i < 3; i++)
        CHECK(tl_bloom_may_contain(f, len, h[i]));
    free(f);
    /* Whole bytes: 100 keys x 7 bits = 700 bits = 87.5 bytes, rounded up to 88. */
    uint64_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = key_hash("m%d", i);
    CHECK_OK(tl_bloom_build(many, 100, 7, &f, &len));
    CHECK_EQ_INT(len, 89);
    CHECK_EQ_INT(f[88], 5); /* round(4.83) */
    free(f);
    /* k is clamped to 1..30. */
    CHECK_OK(tl_bloom_build(many, 100, 1, &f, &len));
    CHECK_EQ_INT(f[len - 1], 1);
    free(f);
    CHECK_OK(tl_bloom_build(many, 100, 100, &f, &len));
    CHECK_EQ_INT(len, 100 * 100 / 8 + 1);
    CHECK_EQ_INT(f[len - 1], 30);
    for (int i = 0; i < 100; i++)
        CHECK(tl_bloom_may_contain(f, len, many[i]));
    free(f);
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
}

int main(void)
{
    test_bloom_fp_rate_and_no_false_negatives();
    test_bloom_sizes_and_probes();
    test_bloom_unknown_formats_say_maybe();
    printf("test_bloom: ok\n");
    return 0;
}
