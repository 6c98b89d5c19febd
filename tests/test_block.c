/*
 * test_block.c - block building and searching (storage/block.c): exact encoding of entries and
 * restarts, full scans, seeks to present, absent and out-of-range keys, and malformed contents
 * (truncations, bad varints, lengths past the end, bad restarts, every single-byte change),
 * which must set TL_ECORRUPT or decode to something in bounds, never read outside the block.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "coding.h"
#include "testutil.h"

#define N_KEYS 1000

static void key_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "k%05d", i);
}

static void val_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "value-%d", i * 7);
}

/* Builds the N_KEYS-entry block; returns a malloc'd copy of its contents. */
static uint8_t *build_block(size_t *len)
{
    struct tl_block_builder b;
    tl_block_builder_init(&b, TL_BLOCK_RESTART_INTERVAL);
    char k[32], v[32];
    for (int i = 0; i < N_KEYS; i++) {
        key_of(i, k, sizeof k);
        val_of(i, v, sizeof v);
        CHECK_OK(tl_block_add(&b, k, strlen(k), v, strlen(v)));
    }
    CHECK_EQ_INT(b.entries, N_KEYS);
    CHECK_EQ_INT(b.n_restarts, (N_KEYS + 15) / 16);
    size_t est = tl_block_size_estimate(&b);
    const uint8_t *data = tl_block_finish(&b, len);
    CHECK(data != NULL);
    CHECK_EQ_INT(*len, est);
    uint8_t *copy = malloc(*len);
    CHECK(copy != NULL);
    memcpy(copy, data, *len);
    tl_block_builder_free(&b);
    return copy;
}

static void check_current(struct tl_block_iter *it, int i)
{
    char k[32], v[32];
    key_of(i, k, sizeof k);
    val_of(i, v, sizeof v);
    CHECK(tl_block_iter_valid(it));
    CHECK_EQ_INT(it->klen, strlen(k));
    CHECK(memcmp(it->key, k, it->klen) == 0);
    CHECK_EQ_INT(it->vlen, strlen(v));
    CHECK(memcmp(it->val, v, it->vlen) == 0);
}

static void test_block_exact_encoding(void)
{
    struct tl_block_builder b;
    tl_block_builder_init(&b, TL_BLOCK_RESTART_INTERVAL);
    CHECK(tl_block_empty(&b));
    CHECK_OK(tl_block_add(&b, "abcdef", 6, "1", 1));
    CHECK_OK(tl_block_add(&b, "abcdxy", 6, "22", 2));
    CHECK(!tl_block_empty(&b));
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    const uint8_t want[] = {0, 6, 1, 'a', 'b', 'c', 'd', 'e', 'f', '1', /* first entry */
                            4, 2, 2, 'x', 'y', '2', '2',                /* shares "abcd" */
                            0, 0, 0, 0,                                 /* restart at 0 */
                            1, 0, 0, 0};                                /* one restart */
    CHECK_EQ_INT(len, sizeof want);
    CHECK(memcmp(d, want, len) == 0);

    /* Reset keeps nothing of the old entries. */
    tl_block_builder_reset(&b);
    CHECK(tl_block_empty(&b));
    CHECK_EQ_INT(tl_block_size_estimate(&b), 4);
    CHECK_OK(tl_block_add(&b, "b", 1, "", 0));
    d = tl_block_finish(&b, &len);
    const uint8_t want2[] = {0, 1, 0, 'b', 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(len, sizeof want2);
    CHECK(memcmp(d, want2, len) == 0);
    tl_block_builder_free(&b);
}

static void test_block_restart_every_16(void)
{
    struct tl_block_builder b;
    tl_block_builder_init(&b, TL_BLOCK_RESTART_INTERVAL);
    char k[32];
    size_t off17 = 0;
    for (int i = 0; i < 33; i++) {
        if (i == 16)
            off17 = b.len;
        key_of(i, k, sizeof k);
        CHECK_OK(tl_block_add(&b, k, strlen(k), "v", 1));
    }
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    CHECK_EQ_INT(tl_get_u32(d + len - 4), 3);
    CHECK_EQ_INT(tl_get_u32(d + len - 16), 0);
    CHECK_EQ_INT(tl_get_u32(d + len - 12), off17);
    /* The 17th entry restarts: it shares nothing and holds the whole key. */
    CHECK_EQ_INT(d[off17], 0);
    CHECK_EQ_INT(d[off17 + 1], 6);
    CHECK(memcmp(d + off17 + 3, "k00016", 6) == 0);
    /* The 18th shares "k0001". */
    CHECK_EQ_INT(d[off17 + 3 + 6 + 1], 5);
    tl_block_builder_free(&b);
}

/* tl_block_check_restarts: a built block passes; a restart moved off an entry's start, onto an
 * entry that shares a prefix, out of order, or not at 0 is corruption. */
static void test_block_check_restarts(void)
{
    struct tl_block_builder b;
    tl_block_builder_init(&b, TL_BLOCK_RESTART_INTERVAL);
    char k[32];
    size_t off17 = 0, off18 = 0;
    for (int i = 0; i < 40; i++) {
        if (i == 16)
            off17 = b.len;
        if (i == 17)
            off18 = b.len;
        key_of(i, k, sizeof k);
        CHECK_OK(tl_block_add(&b, k, strlen(k), "v", 1));
    }
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    uint8_t *copy = malloc(len);
    memcpy(copy, d, len);
    CHECK_OK(tl_block_check_restarts(copy, len));
    uint8_t *r1 = copy + len - 4 - 4 * 3 + 4; /* the second restart of three */
    tl_put_u32(r1, (uint32_t)off17 + 1);      /* mid-entry */
    CHECK_EQ_INT(tl_block_check_restarts(copy, len), TL_ECORRUPT);
    tl_put_u32(r1, (uint32_t)off18); /* an entry that shares a prefix */
    CHECK_EQ_INT(tl_block_check_restarts(copy, len), TL_ECORRUPT);
    tl_put_u32(r1, (uint32_t)off17);
    CHECK_OK(tl_block_check_restarts(copy, len));
    tl_put_u32(copy + len - 16, (uint32_t)off17); /* restart 0 not at 0, and out of order */
    CHECK_EQ_INT(tl_block_check_restarts(copy, len), TL_ECORRUPT);
    free(copy);
    tl_block_builder_free(&b);
}

static void test_block_scan_and_seek(void)
{
    size_t len;
    uint8_t *data = build_block(&len);
    struct tl_block_iter it;
    CHECK_OK(tl_block_iter_init(&it, data, len));
    CHECK_EQ_INT(it.n_restarts, (N_KEYS + 15) / 16);
    CHECK(!tl_block_iter_valid(&it)); /* not positioned yet */

    int n = 0;
    for (tl_block_iter_first(&it); tl_block_iter_valid(&it); tl_block_iter_next(&it))
        check_current(&it, n++);
    CHECK_EQ_INT(it.status, 0);
    CHECK_EQ_INT(n, N_KEYS);
    tl_block_iter_next(&it); /* past the end stays invalid */
    CHECK(!tl_block_iter_valid(&it));

    char k[32];
    for (int i = 0; i < N_KEYS; i++) {
        key_of(i, k, sizeof k);
        tl_block_iter_seek(&it, k, strlen(k));
        check_current(&it, i);
        /* Between i and i+1: "k00012" < "k00012~" < "k00013". */
        strcat(k, "~");
        tl_block_iter_seek(&it, k, strlen(k));
        if (i + 1 < N_KEYS)
            check_current(&it, i + 1);
        else
            CHECK(!tl_block_iter_valid(&it));
    }
    tl_block_iter_seek(&it, "a", 1);
    check_current(&it, 0);
    tl_block_iter_seek(&it, "", 0);
    check_current(&it, 0);
    tl_block_iter_seek(&it, "k", 1);
    check_current(&it, 0);
    tl_block_iter_seek(&it, "k01000", 6);
    CHECK(!tl_block_iter_valid(&it));
    CHECK_EQ_INT(it.status, 0);
    tl_block_iter_seek(&it, "z", 1);
    CHECK(!tl_block_iter_valid(&it));
    /* Seeking again after falling off the end works. */
    tl_block_iter_seek(&it, "k00500", 6);
    check_current(&it, 500);
    tl_block_iter_next(&it);
    check_current(&it, 501);
    tl_block_iter_free(&it);
    free(data);
}

static void test_block_prefix_keys_and_binary(void)
{
    /* Keys that are prefixes of each other, and bytes 0 and 255. */
    static const char *const keys[] = {"", "\x00", "\x00\x00", "a", "aa", "aa\xff", "ab", "b"};
    static const size_t lens[] = {0, 1, 2, 1, 2, 3, 2, 1};
    const int n = 8;
    struct tl_block_builder b;
    tl_block_builder_init(&b, 2);
    for (int i = 0; i < n; i++)
        CHECK_OK(tl_block_add(&b, keys[i], lens[i], &i, sizeof i));
    CHECK_EQ_INT(b.n_restarts, 4);
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    struct tl_block_iter it;
    CHECK_OK(tl_block_iter_init(&it, d, len));
    for (int i = 0; i < n; i++) {
        tl_block_iter_seek(&it, keys[i], lens[i]);
        CHECK(tl_block_iter_valid(&it));
        CHECK_EQ_INT(it.klen, lens[i]);
        CHECK(it.klen == 0 || memcmp(it.key, keys[i], lens[i]) == 0);
        int v;
        memcpy(&v, it.val, sizeof v);
        CHECK_EQ_INT(v, i);
    }
    tl_block_iter_seek(&it, "a\x01", 2); /* between "a" and "aa" */
    CHECK_EQ_INT(it.klen, 2);
    CHECK(memcmp(it.key, "aa", 2) == 0);
    tl_block_iter_free(&it);
    tl_block_builder_free(&b);
}

/* Keys on both sides of the iterator's inline buffer (TL_BLOCK_KEY_INLINE): lengths 1 to 300
 * with long shared prefixes, so a key rebuilt from a prefix moves out of the buffer mid-scan
 * and mid-seek, and a seek after a long key comes back to short ones. */
static void test_block_long_keys(void)
{
    _Static_assert(TL_BLOCK_KEY_INLINE == 64, "the keys below are laid out around 64 bytes");
    enum { N = 300 };
    static char keys[N][N + 2];
    struct tl_block_builder b;
    tl_block_builder_init(&b, 16);
    for (int i = 0; i < N; i++) {
        /* Key i is "k" and i + 1 'x': i + 2 bytes, each a prefix of the next. The first key
         * past the buffer (i = 63) is not a restart, so it is rebuilt from a shared prefix. */
        memset(keys[i], 'x', (size_t)i + 2);
        keys[i][0] = 'k';
        CHECK_OK(tl_block_add(&b, keys[i], (size_t)i + 2, &i, sizeof i));
    }
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    struct tl_block_iter it;
    CHECK_OK(tl_block_iter_init(&it, d, len));
    int i = 0;
    for (tl_block_iter_first(&it); tl_block_iter_valid(&it); tl_block_iter_next(&it), i++) {
        CHECK_EQ_INT(it.klen, (size_t)i + 2);
        CHECK(memcmp(it.key, keys[i], it.klen) == 0);
    }
    CHECK_EQ_INT(i, N);
    for (int k = 0; k < N; k += 7) {
        tl_block_iter_seek(&it, keys[k], (size_t)k + 2);
        CHECK(tl_block_iter_valid(&it));
        CHECK_EQ_INT(it.klen, (size_t)k + 2);
        CHECK(memcmp(it.key, keys[k], it.klen) == 0);
        int v;
        memcpy(&v, it.val, sizeof v);
        CHECK_EQ_INT(v, k);
    }
    CHECK_EQ_INT(it.status, 0);
    tl_block_iter_free(&it);
    /* Freed, the iterator is back on its buffer; initialized again, it works again. */
    CHECK(it.key == it.key_inline);
    CHECK_OK(tl_block_iter_init(&it, d, len));
    tl_block_iter_seek(&it, keys[N - 1], N + 1);
    CHECK(tl_block_iter_valid(&it) && it.klen == N + 1);
    tl_block_iter_free(&it);
    tl_block_builder_free(&b);
}

static void test_block_empty(void)
{
    struct tl_block_builder b;
    tl_block_builder_init(&b, TL_BLOCK_RESTART_INTERVAL);
    size_t len;
    const uint8_t *d = tl_block_finish(&b, &len);
    CHECK_EQ_INT(len, 4);
    struct tl_block_iter it;
    CHECK_OK(tl_block_iter_init(&it, d, len));
    tl_block_iter_first(&it);
    CHECK(!tl_block_iter_valid(&it));
    tl_block_iter_seek(&it, "a", 1);
    CHECK(!tl_block_iter_valid(&it));
    CHECK_EQ_INT(it.status, 0);
    tl_block_iter_free(&it);
    tl_block_builder_free(&b);
}

/* Scans and seeks a block, returning the iterator's final status; never crashes. */
static int exercise(const uint8_t *data, size_t len)
{
    /* A copy of exactly len bytes, so that ASan catches any read past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, len);
    struct tl_block_iter it;
    int rc = tl_block_iter_init(&it, copy, len);
    if (rc == 0) {
        int steps = 0;
        for (tl_block_iter_first(&it); tl_block_iter_valid(&it); tl_block_iter_next(&it)) {
            CHECK(it.val >= copy && it.val + it.vlen <= copy + len);
            steps++;
        }
        CHECK(steps <= N_KEYS);
        rc = it.status;
        tl_block_iter_seek(&it, "k00500", 6);
        if (it.status)
            rc = it.status;
        tl_block_iter_seek(&it, "k99999", 6);
        if (it.status)
            rc = it.status;
    }
    tl_block_iter_free(&it);
    free(copy);
    return rc;
}

static void test_block_corrupt_contents(void)
{
    size_t len;
    uint8_t *data = build_block(&len);
    CHECK_EQ_INT(exercise(data, len), 0);

    /* Too short to hold the restart count. */
    struct tl_block_iter it;
    CHECK_EQ_INT(tl_block_iter_init(&it, data, 3), TL_ECORRUPT);
    CHECK(!tl_block_iter_valid(&it));
    tl_block_iter_free(&it);

    /* A restart count larger than the block. */
    uint8_t bad[64];
    memset(bad, 0, sizeof bad);
    tl_put_u32(bad + sizeof bad - 4, 1000);
    CHECK_EQ_INT(tl_block_iter_init(&it, bad, sizeof bad), TL_ECORRUPT);
    tl_block_iter_free(&it);
    tl_put_u32(bad + sizeof bad - 4, 0xffffffffu);
    CHECK_EQ_INT(tl_block_iter_init(&it, bad, sizeof bad), TL_ECORRUPT);
    tl_block_iter_free(&it);

    /* Entries but no restart. */
    const uint8_t norestart[] = {0, 1, 0, 'a', 0, 0, 0, 0};
    CHECK_EQ_INT(tl_block_iter_init(&it, norestart, sizeof norestart), TL_ECORRUPT);
    tl_block_iter_free(&it);

    /* A varint that never ends. */
    const uint8_t badvarint[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0,    0,    0,    0,    1,    0,    0,    0};
    CHECK_EQ_INT(exercise(badvarint, sizeof badvarint), TL_ECORRUPT);

    /* A value length past the end of the entries. */
    const uint8_t longval[] = {0, 1, 200, 'a', 'x', 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(exercise(longval, sizeof longval), TL_ECORRUPT);
    /* An unshared key length past the end. */
    const uint8_t longkey[] = {0, 100, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(exercise(longkey, sizeof longkey), TL_ECORRUPT);
    /* A restart entry claiming a shared prefix. */
    const uint8_t sharedrestart[] = {3, 1, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(exercise(sharedrestart, sizeof sharedrestart), TL_ECORRUPT);
    /* A second entry sharing more than the first key has. */
    const uint8_t overshare[] = {0, 1, 0, 'a', 5, 1, 0, 'b', 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK_EQ_INT(exercise(overshare, sizeof overshare), TL_ECORRUPT);
    /* A restart offset outside the entries. */
    const uint8_t farrestart[] = {0, 1, 0, 'a', 0, 0, 0, 0, 99, 0, 0, 0, 2, 0, 0, 0};
    CHECK_EQ_INT(exercise(farrestart, sizeof farrestart), TL_ECORRUPT);

    /* Every truncation, and every single byte changed: never out of bounds. */
    int corrupt = 0;
    for (size_t cut = 0; cut < len; cut++)
        corrupt += exercise(data, cut) == TL_ECORRUPT;
    CHECK(corrupt > 0);
    uint8_t *mut = malloc(len);
    CHECK(mut != NULL);
    uint64_t seed = 42;
    for (size_t pos = 0; pos < len; pos++) {
        memcpy(mut, data, len);
        mut[pos] ^= (uint8_t)(1 + test_rand(&seed) % 255);
        int rc = exercise(mut, len);
        CHECK(rc == 0 || rc == TL_ECORRUPT);
    }
    free(mut);
    free(data);
}

int main(void)
{
    test_block_exact_encoding();
    test_block_restart_every_16();
    test_block_check_restarts();
    test_block_scan_and_seek();
    test_block_prefix_keys_and_binary();
    test_block_long_keys();
    test_block_empty();
    test_block_corrupt_contents();
    printf("test_block: ok\n");
    return 0;
}
