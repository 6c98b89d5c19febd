/*
 * test_compress.c - block compression (storage/compress.c): round trips of every codec over
 * empty, tiny, compressible and random inputs; the payload's varint length prefix; and
 * malformed payloads (bad prefix, length over the limit, truncated, wrong length, garbage),
 * which must return TL_ECORRUPT without reading or writing out of bounds.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "compress.h"
#include "testutil.h"

#define ZSTD_LEVEL 3
#define BIG_BYTES  (1u << 20)
#define MAX_LEN    (64u << 20)

static const enum tl_compression codecs[] = {TL_COMPRESS_NONE, TL_COMPRESS_LZ4, TL_COMPRESS_ZSTD};

/* Compresses src, checks the payload's shape, decompresses and compares. Returns the payload
 * length; *payload gets a malloc'd copy of it. */
static size_t round_trip(enum tl_compression c, const uint8_t *src, size_t len, uint8_t **payload)
{
    size_t bound = tl_compress_bound(c, len);
    CHECK(bound >= (c == TL_COMPRESS_NONE ? len : 1));
    uint8_t *dst = malloc(bound ? bound : 1);
    CHECK(dst != NULL);
    size_t out;
    CHECK_OK(tl_compress(c, ZSTD_LEVEL, src, len, dst, &out));
    CHECK(out <= bound);
    if (c == TL_COMPRESS_NONE) {
        CHECK_EQ_INT(out, len);
        CHECK(len == 0 || memcmp(dst, src, len) == 0);
    } else {
        uint64_t raw;
        size_t n = tl_get_varint(dst, dst + out, &raw);
        CHECK(n > 0);
        CHECK_EQ_INT(raw, len);
        CHECK_EQ_INT(n, tl_varint_len(len));
    }
    uint8_t *back;
    size_t back_len;
    CHECK_OK(tl_decompress(c, dst, out, MAX_LEN, &back, &back_len));
    CHECK_EQ_INT(back_len, len);
    CHECK(len == 0 || memcmp(back, src, len) == 0);
    free(back);
    if (payload)
        *payload = dst;
    else
        free(dst);
    return out;
}

static void test_compress_round_trips(void)
{
    uint8_t *text = malloc(BIG_BYTES), *rnd = malloc(BIG_BYTES);
    CHECK(text && rnd);
    uint64_t seed = 7;
    for (size_t i = 0; i < BIG_BYTES; i++) {
        text[i] = (uint8_t)("counter:ip:10.0.0."[i % 18] + (i / 4096) % 3);
        rnd[i] = (uint8_t)test_rand(&seed);
    }
    static const size_t sizes[] = {0, 1, 2, 17, 4096, 65536, BIG_BYTES};
    for (size_t c = 0; c < 3; c++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            round_trip(codecs[c], text, sizes[s], NULL);
            size_t out = round_trip(codecs[c], rnd, sizes[s], NULL);
            /* Random bytes do not shrink. */
            if (codecs[c] != TL_COMPRESS_NONE && sizes[s] > 0)
                CHECK(out >= sizes[s]);
        }
        /* Repetitive text shrinks far past the 1/8 the tables require. */
        if (codecs[c] != TL_COMPRESS_NONE)
            CHECK(round_trip(codecs[c], text, 4096, NULL) < 4096 / 8);
    }
    free(text);
    free(rnd);
}

static void test_compress_zstd_levels(void)
{
    uint8_t buf[65536];
    uint64_t seed = 11;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)('a' + test_rand(&seed) % 4);
    uint8_t *dst = malloc(tl_compress_bound(TL_COMPRESS_ZSTD, sizeof buf));
    CHECK(dst != NULL);
    size_t fast, strong;
    CHECK_OK(tl_compress(TL_COMPRESS_ZSTD, 1, buf, sizeof buf, dst, &fast));
    CHECK_OK(tl_compress(TL_COMPRESS_ZSTD, 19, buf, sizeof buf, dst, &strong));
    CHECK(strong < fast);
    free(dst);
}

static void test_compress_malformed_payloads(void)
{
    uint8_t text[4096];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (uint8_t)("abcabcabd"[i % 9]);
    uint8_t *out;
    size_t out_len;
    for (size_t c = 1; c < 3; c++) {
        enum tl_compression codec = codecs[c];
        uint8_t *p;
        size_t len = round_trip(codec, text, sizeof text, &p);

        /* No length prefix at all, or one that never ends. */
        CHECK_EQ_INT(tl_decompress(codec, p, 0, MAX_LEN, &out, &out_len), TL_ECORRUPT);
        uint8_t endless[12];
        memset(endless, 0xff, sizeof endless);
        CHECK_EQ_INT(tl_decompress(codec, endless, sizeof endless, MAX_LEN, &out, &out_len),
                     TL_ECORRUPT);
        /* A declared length over the limit is refused before allocating. */
        CHECK_EQ_INT(tl_decompress(codec, p, len, sizeof text - 1, &out, &out_len), TL_ECORRUPT);
        CHECK(strstr(tl_last_error(), "over the limit") != NULL);
        uint8_t huge[16];
        size_t h = tl_put_varint(huge, UINT64_MAX);
        memcpy(huge + h, p + 2, 4);
        CHECK_EQ_INT(tl_decompress(codec, huge, h + 4, MAX_LEN, &out, &out_len), TL_ECORRUPT);

        /* A declared length that does not match the codec's output. */
        uint8_t *wrong = malloc(len + 1);
        CHECK(wrong != NULL);
        size_t wh = tl_put_varint(wrong, sizeof text + 1);
        CHECK_EQ_INT(wh, 2);
        memcpy(wrong + wh, p + 2, len - 2);
        CHECK_EQ_INT(tl_decompress(codec, wrong, len, MAX_LEN, &out, &out_len), TL_ECORRUPT);
        wh = tl_put_varint(wrong, sizeof text - 1);
        CHECK_EQ_INT(tl_decompress(codec, wrong, len, MAX_LEN, &out, &out_len), TL_ECORRUPT);
        free(wrong);

        /* Every truncation and every single-byte change: an error or the right bytes. */
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *t = malloc(cut ? cut : 1);
            CHECK(t != NULL);
            memcpy(t, p, cut);
            CHECK_EQ_INT(tl_decompress(codec, t, cut, MAX_LEN, &out, &out_len), TL_ECORRUPT);
            free(t);
        }
        uint8_t *m = malloc(len);
        CHECK(m != NULL);
        uint64_t seed = 3;
        for (size_t pos = 0; pos < len; pos++) {
            memcpy(m, p, len);
            m[pos] ^= (uint8_t)(1 + test_rand(&seed) % 255);
            int rc = tl_decompress(codec, m, len, MAX_LEN, &out, &out_len);
            CHECK(rc == 0 || rc == TL_ECORRUPT);
            if (rc == 0) {
                CHECK(out_len <= MAX_LEN);
                free(out);
            }
        }
        free(m);
        free(p);
    }
    /* An unknown type. */
    CHECK_EQ_INT(tl_decompress((enum tl_compression)9, text, 10, MAX_LEN, &out, &out_len),
                 TL_ECORRUPT);
    /* NONE is the identity, its length bounded too. */
    CHECK_EQ_INT(tl_decompress(TL_COMPRESS_NONE, text, sizeof text, 100, &out, &out_len),
                 TL_ECORRUPT);
}

static void *thread_round_trip(void *arg)
{
    (void)arg;
    uint8_t text[8192];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (uint8_t)(i % 13);
    round_trip(TL_COMPRESS_ZSTD, text, sizeof text, NULL);
    return NULL;
}

/* Each thread's Zstd contexts are freed at its exit (LeakSanitizer checks this). */
static void test_compress_threads(void)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, thread_round_trip, NULL) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
}

static void test_compress_names(void)
{
    CHECK(strcmp(tl_compression_name(TL_COMPRESS_NONE), "none") == 0);
    CHECK(strcmp(tl_compression_name(TL_COMPRESS_LZ4), "lz4") == 0);
    CHECK(strcmp(tl_compression_name(TL_COMPRESS_ZSTD), "zstd") == 0);
    CHECK(strcmp(tl_compression_name((enum tl_compression)7), "unknown") == 0);
}

int main(void)
{
    test_compress_round_trips();
    test_compress_zstd_levels();
    test_compress_malformed_payloads();
    test_compress_threads();
    test_compress_names();
    printf("test_compress: ok\n");
    return 0;
}
