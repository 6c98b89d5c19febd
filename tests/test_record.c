/*
 * test_record.c - entry value encoding round trips, decoding of corrupt input, folding of
 * layers newest first (merges over puts, deletes and nothing; expiry overrides; expiry
 * dropping), and the canonical integer and float text rules.
 */
#include <math.h>

#include "record.h"
#include "testutil.h"

static void roundtrip(const struct tl_record *r)
{
    uint8_t buf[256];
    size_t n = tl_record_encode(r, buf);
    CHECK_EQ_INT(n, tl_record_encoded_len(r));
    struct tl_record d;
    CHECK_OK(tl_record_decode(buf, n, &d));
    CHECK_EQ_INT(d.kind, r->kind);
    CHECK_EQ_INT(d.has_expiry, r->has_expiry);
    if (r->has_expiry)
        CHECK_EQ_INT(d.expire_ms, r->expire_ms);
    if (r->kind == TL_KIND_PUT_INT || r->kind == TL_KIND_MERGE_INT)
        CHECK_EQ_INT(d.i, r->i);
    if (r->kind == TL_KIND_PUT_BYTES) {
        CHECK_EQ_INT(d.len, r->len);
        CHECK(memcmp(d.bytes, r->bytes, r->len) == 0);
    }
}

static struct tl_record rec(uint8_t kind, int64_t i, int64_t expire_ms)
{
    struct tl_record r = {.kind = kind, .i = i};
    r.has_expiry = expire_ms >= 0;
    r.expire_ms = expire_ms >= 0 ? expire_ms : 0;
    return r;
}

static void test_encoding(void)
{
    int64_t ints[] = {0, 1, -1, 63, -64, 1000000, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        struct tl_record a = rec(TL_KIND_PUT_INT, ints[i], -1);
        roundtrip(&a);
        struct tl_record b = rec(TL_KIND_MERGE_INT, ints[i], 1700000000000);
        roundtrip(&b);
    }
    struct tl_record s = {.kind = TL_KIND_PUT_BYTES, .bytes = (const uint8_t *)"a\0b", .len = 3};
    roundtrip(&s);
    struct tl_record d = rec(TL_KIND_DELETE, 0, -1);
    roundtrip(&d);
    struct tl_record e = rec(TL_KIND_EXPIRE, 0, 5);
    roundtrip(&e);
    /* A one-byte PUT_INT (no varint) and an unknown kind are corrupt. */
    uint8_t bad1[] = {TL_KIND_PUT_INT};
    struct tl_record r;
    CHECK_EQ_INT(tl_record_decode(bad1, 1, &r), TL_ECORRUPT);
    uint8_t bad2[] = {0x33, 1};
    CHECK_EQ_INT(tl_record_decode(bad2, 2, &r), TL_ECORRUPT);
    uint8_t bad3[] = {TL_KIND_DELETE, 7};
    CHECK_EQ_INT(tl_record_decode(bad3, 2, &r), TL_ECORRUPT);
    CHECK_EQ_INT(tl_record_decode(bad3, 0, &r), TL_ECORRUPT);
}

/* Folds records given newest first and returns the result. */
static struct tl_record fold(bool bottom, int64_t now, int n, const struct tl_record *recs)
{
    struct tl_fold f;
    tl_fold_init(&f);
    for (int i = 0; i < n; i++)
        if (tl_fold_add(&f, &recs[i]))
            break;
    struct tl_record out;
    CHECK_OK(tl_fold_result(&f, bottom, now, &out));
    return out;
}

static void test_fold(void)
{
    /* Merges over a put add up and keep the put's expiry. */
    struct tl_record a[] = {rec(TL_KIND_MERGE_INT, 5, -1), rec(TL_KIND_MERGE_INT, -2, -1),
                            rec(TL_KIND_PUT_INT, 10, 900), rec(TL_KIND_PUT_INT, 99, -1)};
    struct tl_record r = fold(false, 0, 4, a);
    CHECK_EQ_INT(r.kind, TL_KIND_PUT_INT);
    CHECK_EQ_INT(r.i, 13);
    CHECK_EQ_INT(r.expire_ms, 900);
    /* ... and expire once the clock passes 900 (not at 900: Redis's rule). */
    r = fold(false, 900, 4, a);
    CHECK_EQ_INT(r.kind, TL_KIND_PUT_INT);
    r = fold(false, 901, 4, a);
    CHECK_EQ_INT(r.kind, TL_KIND_DELETE);
    /* Merges with nothing older: partial unless at the bottom, where they start from 0. */
    r = fold(false, 0, 2, a);
    CHECK_EQ_INT(r.kind, TL_KIND_MERGE_INT);
    CHECK_EQ_INT(r.i, 3);
    r = fold(true, 0, 2, a);
    CHECK_EQ_INT(r.kind, TL_KIND_PUT_INT);
    CHECK_EQ_INT(r.i, 3);
    CHECK(!r.has_expiry);
    /* Merge over a delete starts from 0 without expiry. */
    struct tl_record b[] = {rec(TL_KIND_MERGE_INT, 7, -1), rec(TL_KIND_DELETE, 0, -1),
                            rec(TL_KIND_PUT_INT, 1, -1)};
    r = fold(false, 0, 3, b);
    CHECK_EQ_INT(r.kind, TL_KIND_PUT_INT);
    CHECK_EQ_INT(r.i, 7);
    /* An EXPIRE overrides an older expiry; 0 persists. */
    struct tl_record c[] = {rec(TL_KIND_EXPIRE, 0, 0), rec(TL_KIND_EXPIRE, 0, 50),
                            rec(TL_KIND_PUT_INT, 4, 10)};
    r = fold(false, 1000, 3, c);
    CHECK_EQ_INT(r.kind, TL_KIND_PUT_INT);
    CHECK(!r.has_expiry);
    r = fold(false, 1000, 3, c + 1);
    CHECK_EQ_INT(r.kind, TL_KIND_DELETE);
    /* An EXPIRE over nothing stays nothing. */
    r = fold(true, 0, 1, c + 1);
    CHECK_EQ_INT(r.kind, TL_KIND_DELETE);
    /* Partial sums that overflow on the way still give the exact final value. */
    struct tl_record d[] = {rec(TL_KIND_MERGE_INT, -INT64_MAX, -1),
                            rec(TL_KIND_MERGE_INT, INT64_MAX, -1), rec(TL_KIND_PUT_INT, 5, -1)};
    r = fold(false, 0, 3, d);
    CHECK_EQ_INT(r.i, 5);
    /* A merge over bytes is corruption. */
    struct tl_record e[] = {rec(TL_KIND_MERGE_INT, 1, -1),
                            {.kind = TL_KIND_PUT_BYTES, .bytes = (const uint8_t *)"x", .len = 1}};
    struct tl_fold f;
    tl_fold_init(&f);
    tl_fold_add(&f, &e[0]);
    tl_fold_add(&f, &e[1]);
    CHECK_EQ_INT(tl_fold_result(&f, false, 0, &r), TL_ENOTINT);
}

static void test_text(void)
{
    int64_t v;
    CHECK(tl_parse_int("0", 1, &v) && v == 0);
    CHECK(tl_parse_int("-12", 3, &v) && v == -12);
    CHECK(tl_parse_int("9223372036854775807", 19, &v) && v == INT64_MAX);
    CHECK(tl_parse_int("-9223372036854775808", 20, &v) && v == INT64_MIN);
    CHECK(!tl_parse_int("9223372036854775808", 19, &v));
    CHECK(!tl_parse_int("-0", 2, &v));
    CHECK(!tl_parse_int("01", 2, &v));
    CHECK(!tl_parse_int("+1", 2, &v));
    CHECK(!tl_parse_int(" 1", 2, &v));
    CHECK(!tl_parse_int("1 ", 2, &v));
    CHECK(!tl_parse_int("", 0, &v));
    char buf[TL_FLOAT_BUF];
    size_t n = tl_format_float(10.5L + 0.1L, buf, sizeof buf);
    CHECK_EQ_INT(n, 4);
    CHECK(strcmp(buf, "10.6") == 0);
    tl_format_float(3.0L, buf, sizeof buf);
    CHECK(strcmp(buf, "3") == 0);
    tl_format_float(-0.0L, buf, sizeof buf);
    CHECK(strcmp(buf, "0") == 0);
    tl_format_float(5.0e3L, buf, sizeof buf);
    CHECK(strcmp(buf, "5000") == 0);
    long double d;
    CHECK(tl_parse_float("1.5", 3, &d) && d == 1.5L);
    CHECK(tl_parse_float("5.0e3", 5, &d) && d == 5000.0L);
    CHECK(!tl_parse_float(" 1", 2, &d));
    CHECK(!tl_parse_float("1x", 2, &d));
    CHECK(!tl_parse_float("nan", 3, &d));
}

int main(void)
{
    test_encoding();
    test_fold();
    test_text();
    printf("test_record: ok\n");
    return 0;
}
