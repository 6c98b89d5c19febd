/*
 * commands_hll.c - Redis's HyperLogLog commands: PFADD, PFCOUNT, PFMERGE.
 *
 * An HLL is a string value in Redis's own representation, so GET, SET, DUMP-like copies and
 * clients that read the bytes see what Redis would store (from Redis's documentation of the
 * format and the published algorithms; no Redis code is used):
 *
 *   bytes 0..3   "HYLL"
 *   byte  4      encoding: 0 dense, 1 sparse
 *   bytes 5..7   zero
 *   bytes 8..15  cached cardinality, little endian; bit 7 of byte 15 set = not valid
 *   bytes 16..   the 16384 registers (6 bits each, values 0..51):
 *     dense:  12288 bytes; register i is bits i*6 .. i*6+5 counted from the least significant
 *             bit of byte 0 (a register may straddle two bytes).
 *     sparse: run-length opcodes covering all 16384 registers, in order:
 *             00xxxxxx           ZERO:  xxxxxx + 1 registers (1..64) are 0
 *             01xxxxxx yyyyyyyy  XZERO: xxxxxxyyyyyyyy + 1 registers (1..16384) are 0
 *             1vvvvvxx           VAL:   xx + 1 registers (1..4) are vvvvv + 1 (1..32)
 *
 * As in Redis, a new HLL is sparse (one XZERO, 18 bytes) and turns dense, never back, once a
 * register needs a value over 32 or the value would exceed TL_HLL_SPARSE_MAX_BYTES
 * (hll-sparse-max-bytes). Writes edit the stored bytes register by register in Redis's order
 * (see PFADD below), since sparse runs depend on the order of updates; reads decode a value
 * into one byte per register.
 *
 * Hash: MurmurHash64A (Austin Appleby's public-domain 64-bit MurmurHash2) with seed 0xadc83b19,
 * reading 8-byte blocks little endian. The low 14 bits pick the register; the register takes
 * 1 + the number of trailing zeros of the remaining 50 bits (at most 51).
 *
 * Estimate: Otmar Ertl's improved raw estimator ("New cardinality estimation algorithms for
 * HyperLogLog sketches", 2017), from the histogram of register values, as Redis 4+ uses.
 *
 * Cache: PFCOUNT of one key stores the estimate in the header and writes the key back when the
 * cached value was not valid, as Redis does; PFADD that changes a register, and PFMERGE,
 * invalidate it. Expiry is kept by every write.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define HLL_P                    14
#define HLL_REGISTERS            (1 << HLL_P) /* 16384 */
#define HLL_Q                    (64 - HLL_P) /* hash bits left for the run of zeros */
#define HLL_REGISTER_MAX         (HLL_Q + 1)  /* 51 */
#define HLL_BITS                 6
#define HLL_HDR_BYTES            16
#define HLL_DENSE_BYTES          (HLL_HDR_BYTES + HLL_REGISTERS * HLL_BITS / 8)
#define HLL_ENC_DENSE            0
#define HLL_ENC_SPARSE           1
#define HLL_CARD_OFFSET          8
#define HLL_CARD_INVALID         0x80 /* in byte 15 */
#define HLL_SPARSE_VAL_MAX_VALUE 32
#define HLL_SPARSE_VAL_MAX_LEN   4
#define HLL_SPARSE_ZERO_MAX_LEN  64
#define TL_HLL_SPARSE_MAX_BYTES  3000 /* Redis's hll-sparse-max-bytes default, header included */
#define HLL_SEED                 0xadc83b19ULL
#define HLL_ALPHA_INF            0.721347520444481703680 /* 1 / (2 ln 2) */

static const char HLL_WRONGTYPE[] = "WRONGTYPE Key is not a valid HyperLogLog string value.";
static const char HLL_CORRUPT[] = "INVALIDOBJ Corrupted HLL object detected";

/* A decoded HLL: one byte per register, plus what the header said. */
struct hll {
    uint8_t reg[HLL_REGISTERS];
    int encoding;
    bool card_valid;
    uint64_t card;
};

enum hll_check {
    HLL_OK = 0,
    HLL_NOT_HLL = 1, /* WRONGTYPE */
    HLL_CORRUPTED = 2,
    HLL_TYPED = 3, /* a key of Tally's own types: the generic WRONGTYPE */
};

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t murmur64a(const uint8_t *p, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const int r = 47;
    uint64_t h = seed ^ (len * m);
    size_t nblocks = len / 8;
    for (size_t i = 0; i < nblocks; i++, p += 8) {
        uint64_t k = 0;
        for (int b = 7; b >= 0; b--)
            k = (k << 8) | p[b];
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    size_t tail = len & 7;
    if (tail) {
        for (size_t b = tail; b-- > 0;)
            h ^= (uint64_t)p[b] << (8 * b);
        h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}

/* The register an element goes to and the value it offers (1 .. HLL_REGISTER_MAX). */
static void hll_position(const char *ele, size_t len, unsigned *index, uint8_t *value)
{
    uint64_t h = murmur64a((const uint8_t *)ele, len, HLL_SEED);
    *index = (unsigned)(h & (HLL_REGISTERS - 1));
    h >>= HLL_P;
    h |= 1ULL << HLL_Q; /* the run ends by bit Q at the latest */
    uint8_t count = 1;
    while (!(h & 1)) {
        count++;
        h >>= 1;
    }
    *value = count;
}

static void dense_set(uint8_t *r, unsigned i, uint8_t val)
{
    unsigned bit = i * HLL_BITS, byte = bit / 8, shift = bit % 8;
    r[byte] = (uint8_t)((r[byte] & ~(63u << shift)) | (unsigned)val << shift);
    if (shift > 8 - HLL_BITS)
        r[byte + 1] =
            (uint8_t)((r[byte + 1] & ~(63u >> (8 - shift))) | (unsigned)val >> (8 - shift));
}

static uint8_t dense_get(const uint8_t *r, unsigned i)
{
    unsigned bit = i * HLL_BITS, byte = bit / 8, shift = bit % 8;
    unsigned v = r[byte] >> shift;
    if (shift > 8 - HLL_BITS)
        v |= (unsigned)r[byte + 1] << (8 - shift);
    return (uint8_t)(v & 63);
}

/* ---- decoding and encoding ------------------------------------------------------------------- */

/* Decodes a stored value into h. Returns enum hll_check. */
static int hll_decode(const struct tl_val *v, struct hll *h)
{
    if (v->type == TL_VAL_TYPED)
        return HLL_TYPED;
    if (v->type != TL_VAL_BYTES || v->len < HLL_HDR_BYTES || memcmp(v->bytes, "HYLL", 4) != 0)
        return HLL_NOT_HLL;
    const uint8_t *p = (const uint8_t *)v->bytes;
    h->encoding = p[4];
    if (h->encoding > HLL_ENC_SPARSE)
        return HLL_NOT_HLL;
    if (h->encoding == HLL_ENC_DENSE && v->len != HLL_DENSE_BYTES)
        return HLL_NOT_HLL;
    h->card = 0;
    for (int b = 7; b >= 0; b--)
        h->card = (h->card << 8) | p[HLL_CARD_OFFSET + b];
    h->card_valid = !(p[HLL_CARD_OFFSET + 7] & HLL_CARD_INVALID);

    const uint8_t *r = p + HLL_HDR_BYTES;
    if (h->encoding == HLL_ENC_DENSE) {
        for (unsigned i = 0; i < HLL_REGISTERS; i++)
            h->reg[i] = dense_get(r, i);
        return HLL_OK;
    }
    const uint8_t *end = p + v->len;
    unsigned idx = 0;
    while (r < end) {
        unsigned run;
        uint8_t val = 0;
        if ((*r & 0xc0) == 0x00) { /* ZERO */
            run = (*r & 0x3f) + 1u;
            r++;
        } else if ((*r & 0xc0) == 0x40) { /* XZERO */
            if (r + 1 >= end)
                return HLL_CORRUPTED;
            run = (((unsigned)*r & 0x3f) << 8 | r[1]) + 1u;
            r += 2;
        } else { /* VAL */
            val = (uint8_t)(((*r >> 2) & 0x1f) + 1);
            run = (*r & 3u) + 1u;
            r++;
        }
        if (run > HLL_REGISTERS - idx)
            return HLL_CORRUPTED;
        memset(h->reg + idx, val, run);
        idx += run;
    }
    return idx == HLL_REGISTERS ? HLL_OK : HLL_CORRUPTED;
}

/* ---- the estimate ---------------------------------------------------------------------------- */

static double hll_sigma(double x)
{
    if (x == 1.0)
        return INFINITY;
    double y = 1.0, z = x, prev;
    do {
        x *= x;
        prev = z;
        z += x * y;
        y += y;
    } while (prev != z);
    return z;
}

static double hll_tau(double x)
{
    if (x == 0.0 || x == 1.0)
        return 0.0;
    double y = 1.0, z = 1 - x, prev;
    do {
        x = sqrt(x);
        prev = z;
        y *= 0.5;
        z -= pow(1 - x, 2) * y;
    } while (prev != z);
    return z / 3;
}

uint64_t tl_hll_estimate(const uint8_t *reg)
{
    int histo[HLL_REGISTER_MAX + 1] = {0};
    for (unsigned i = 0; i < HLL_REGISTERS; i++)
        histo[reg[i]]++;
    double m = HLL_REGISTERS;
    double z = m * hll_tau((m - histo[HLL_Q + 1]) / m);
    for (int j = HLL_Q; j >= 1; j--) {
        z += histo[j];
        z *= 0.5;
    }
    z += m * hll_sigma(histo[0] / m);
    return (uint64_t)llroundl(HLL_ALPHA_INF * m * m / z);
}

/* ---- engine access ------------------------------------------------------------------------- */

/* Reads key into *h. Returns 1 when found, 0 when missing, -(enum hll_check) for a value that
 * is not a valid HLL, or an engine error (< -2). */
static int key_read_hll(struct tl_client *c, const char *key, size_t klen, struct hll *h)
{
    struct tl_dbkey k;
    struct tl_val v;
    memset(&v, 0, sizeof v);
    int rc = tl_dbkey_make(&k, c->db, key, klen);
    if (rc == 0)
        rc = tl_db_get(tl_srv->db, k.p, k.len, &v);
    tl_dbkey_free(&k);
    if (rc == 1) {
        int chk = hll_decode(&v, h);
        if (chk != HLL_OK)
            rc = -chk;
    }
    tl_val_clear(&v);
    return rc;
}

/* Replies the error of a failed HLL read or update; check is enum hll_check or 0. */
static void reply_hll_error(struct tl_client *c, int check, int rc)
{
    if (check == HLL_NOT_HLL)
        tl_reply_error(c, HLL_WRONGTYPE);
    else if (check == HLL_TYPED)
        tl_reply_error(c, TL_WRONGTYPE_ERR);
    else if (check == HLL_CORRUPTED)
        tl_reply_error(c, HLL_CORRUPT);
    else
        tl_reply_engine_error(c, rc);
}

/* ---- PFADD --------------------------------------------------------------------------------- */

/*
 * PFADD edits the stored bytes in place, register by register, as Redis does, so that the
 * sparse opcodes come out exactly as Redis's (its runs depend on the order of the updates, so
 * decoding and re-encoding would not give the same bytes):
 *  - a VAL of length 1, or a ZERO of length 1, is overwritten with the new VAL;
 *  - otherwise the opcode is replaced by up to three: the registers before the one set (same
 *    kind and value as the old opcode), VAL(value, 1), the registers after it. If that would
 *    take the value past TL_HLL_SPARSE_MAX_BYTES, or a value is over 32, the HLL turns dense;
 *  - then, from the opcode before the changed one forward over at most HLL_SPARSE_MERGE_SCAN
 * opcodes, adjacent VALs of one value are joined while their run fits in 4.
 */
#define HLL_SPARSE_MERGE_SCAN 5
#define HLL_SPARSE_SEQ_MAX    5 /* bytes: XZERO or ZERO, VAL, XZERO or ZERO */

/* The value being edited: the header and registers, with room to grow. */
struct hll_bytes {
    uint8_t *p;
    size_t len, cap;
};

/* Writes a run of zeros as ZERO or XZERO; returns the bytes written. */
static size_t sparse_zero_op(uint8_t *out, unsigned run)
{
    if (run <= HLL_SPARSE_ZERO_MAX_LEN) {
        out[0] = (uint8_t)(run - 1);
        return 1;
    }
    out[0] = (uint8_t)(0x40 | (run - 1) >> 8);
    out[1] = (uint8_t)((run - 1) & 0xff);
    return 2;
}

static uint8_t sparse_val_op(uint8_t val, unsigned run)
{
    return (uint8_t)(0x80 | (val - 1) << 2 | (run - 1));
}

/* Turns a sparse value (already checked by hll_decode) dense, keeping the header. */
static int bytes_to_dense(struct hll_bytes *b, struct hll *scratch)
{
    struct tl_val v = {.type = TL_VAL_BYTES, .bytes = (char *)b->p, .len = b->len};
    if (hll_decode(&v, scratch) != HLL_OK)
        return TL_ECORRUPT;
    uint8_t *p = calloc(1, HLL_DENSE_BYTES);
    if (!p)
        return -ENOMEM;
    memcpy(p, b->p, HLL_HDR_BYTES);
    p[4] = HLL_ENC_DENSE;
    for (unsigned i = 0; i < HLL_REGISTERS; i++)
        dense_set(p + HLL_HDR_BYTES, i, scratch->reg[i]);
    free(b->p);
    b->p = p;
    b->len = b->cap = HLL_DENSE_BYTES;
    return 0;
}

/* Sets register idx to val when val is larger in a sparse value. Returns 1 if it changed, 0 if
 * not, 2 if the value must turn dense first, or a negative error. */
static int sparse_set(struct hll_bytes *b, unsigned idx, uint8_t val)
{
    if (val > HLL_SPARSE_VAL_MAX_VALUE)
        return 2;
    uint8_t *p = b->p + HLL_HDR_BYTES, *end = b->p + b->len;
    unsigned first = 0, run = 0;
    bool is_val = false;
    size_t oplen = 1;
    uint8_t oldval = 0;
    uint8_t *prev = NULL; /* the opcode before the one that covers idx */
    for (; p < end; prev = p, p += oplen, first += run) {
        is_val = (*p & 0x80) != 0;
        oplen = 1;
        if ((*p & 0xc0) == 0x00) {
            run = (*p & 0x3fu) + 1;
        } else if ((*p & 0xc0) == 0x40) {
            run = (((unsigned)*p & 0x3f) << 8 | p[1]) + 1;
            oplen = 2;
        } else {
            oldval = (uint8_t)(((*p >> 2) & 0x1f) + 1);
            run = (*p & 3u) + 1;
        }
        if (idx < first + run)
            break;
    }
    if (p >= end)
        return TL_ECORRUPT; /* hll_decode checked the runs cover every register */
    size_t pos = (size_t)(p - b->p);
    size_t merge_from = prev ? (size_t)(prev - b->p) : pos;
    if (is_val && oldval >= val)
        return 0;
    if (run == 1) { /* a VAL or ZERO of one register: overwrite it */
        *p = sparse_val_op(val, 1);
    } else {
        uint8_t seq[HLL_SPARSE_SEQ_MAX];
        size_t n = 0;
        unsigned left = idx - first, right = run - left - 1;
        if (left)
            n += is_val ? (seq[n] = sparse_val_op(oldval, left), 1) : sparse_zero_op(seq + n, left);
        seq[n++] = sparse_val_op(val, 1);
        if (right)
            n += is_val ? (seq[n] = sparse_val_op(oldval, right), 1)
                        : sparse_zero_op(seq + n, right);
        size_t newlen = b->len - oplen + n;
        if (n != oplen && newlen > TL_HLL_SPARSE_MAX_BYTES)
            return 2;
        if (newlen > b->cap) {
            size_t cap = newlen * 2;
            uint8_t *np = realloc(b->p, cap);
            if (!np)
                return -ENOMEM;
            b->p = np;
            b->cap = cap;
        }
        memmove(b->p + pos + n, b->p + pos + oplen, b->len - pos - oplen);
        memcpy(b->p + pos, seq, n);
        b->len = newlen;
    }
    /* Join adjacent VALs of one value from the opcode before the changed one on. */
    size_t q = merge_from;
    for (int scan = HLL_SPARSE_MERGE_SCAN; q < b->len && scan-- > 0;) {
        uint8_t *o = b->p + q;
        if ((*o & 0xc0) == 0x40) {
            q += 2;
            continue;
        }
        if ((*o & 0xc0) == 0x00) {
            q++;
            continue;
        }
        if (q + 1 < b->len && (o[1] & 0x80)) {
            unsigned v1 = (*o >> 2) & 0x1f, v2 = (o[1] >> 2) & 0x1f;
            unsigned len = (*o & 3u) + (o[1] & 3u) + 2;
            if (v1 == v2 && len <= HLL_SPARSE_VAL_MAX_LEN) {
                *o = sparse_val_op((uint8_t)(v1 + 1), len);
                memmove(o + 1, o + 2, b->len - q - 2);
                b->len--;
                continue;
            }
        }
        q++;
    }
    return 1;
}

/* Sets register idx to val when val is larger, in either encoding, turning a sparse value
 * dense when it must. Returns 1 if it changed, 0 if not, or a negative error. */
static int hll_bytes_set(struct hll_bytes *b, unsigned idx, uint8_t val, struct hll *scratch)
{
    int rc = 2;
    if (b->p[4] == HLL_ENC_SPARSE)
        rc = sparse_set(b, idx, val);
    if (rc != 2)
        return rc;
    if (b->p[4] == HLL_ENC_SPARSE && (rc = bytes_to_dense(b, scratch)) < 0)
        return rc;
    uint8_t *r = b->p + HLL_HDR_BYTES;
    if (val <= dense_get(r, idx))
        return 0;
    dense_set(r, idx, val);
    return 1;
}

/* A new HLL as Redis creates it: sparse, one XZERO over every register, cache valid at 0. */
static int hll_bytes_new(struct hll_bytes *b)
{
    b->len = b->cap = HLL_HDR_BYTES + 2;
    b->p = calloc(1, b->len);
    if (!b->p)
        return -ENOMEM;
    memcpy(b->p, "HYLL", 4);
    b->p[4] = HLL_ENC_SPARSE;
    sparse_zero_op(b->p + HLL_HDR_BYTES, HLL_REGISTERS);
    return 0;
}

struct tl_hll_add {
    const struct tl_args *a;
    int from, to; /* the elements: a->argv[from..to) */
    struct hll *scratch;
    int check;
    bool changed;
    struct hll_bytes b;
};

int tl_hll_add_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct tl_hll_add *op = arg;
    free(op->b.p); /* a window's previous bucket, written by now */
    op->b.p = NULL;
    op->changed = false;
    if (found) {
        op->check = hll_decode(cur, op->scratch);
        if (op->check != HLL_OK)
            return TL_UPDATE_KEEP;
        op->b.len = op->b.cap = cur->len;
        op->b.p = malloc(cur->len);
        if (!op->b.p)
            return -ENOMEM;
        memcpy(op->b.p, cur->bytes, cur->len);
    } else {
        int rc = hll_bytes_new(&op->b);
        if (rc < 0)
            return rc;
        op->changed = true; /* a new key answers 1 even without elements */
    }
    for (int j = op->from; j < op->to; j++) {
        unsigned idx;
        uint8_t val;
        hll_position(op->a->argv[j], op->a->len[j], &idx, &val);
        int rc = hll_bytes_set(&op->b, idx, val, op->scratch);
        if (rc < 0)
            return rc;
        if (rc == 1)
            op->changed = true;
    }
    if (!op->changed)
        return TL_UPDATE_KEEP;
    op->b.p[HLL_CARD_OFFSET + 7] |= HLL_CARD_INVALID; /* a new key's too, elements or not */
    next->type = TL_VAL_BYTES;
    next->bytes = (char *)op->b.p;
    next->len = op->b.len;
    next->expire_ms = found ? cur->expire_ms : 0;
    return TL_UPDATE_PUT;
}

struct tl_hll_add *tl_hll_add_new(const struct tl_args *a, int from, int to)
{
    struct tl_hll_add *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    *op =
        (struct tl_hll_add){.a = a, .from = from, .to = to, .scratch = malloc(sizeof(struct hll))};
    if (!op->scratch) {
        free(op);
        return NULL;
    }
    return op;
}

bool tl_hll_add_changed(const struct tl_hll_add *op)
{
    return op->changed;
}

bool tl_hll_add_bad_value(const struct tl_hll_add *op)
{
    return op->check != HLL_OK;
}

void tl_hll_add_free(struct tl_hll_add *op)
{
    if (!op)
        return;
    free(op->b.p);
    free(op->scratch);
    free(op);
}

static void cmd_pfadd(struct tl_client *c, struct tl_args *a)
{
    struct tl_hll_add *op = tl_hll_add_new(a, 2, a->argc);
    if (!op) {
        tl_reply_engine_error(c, -ENOMEM);
        return;
    }
    int rc = tl_key_update(c, a->argv[1], a->len[1], tl_hll_add_update, op);
    if (rc < 0 || op->check != HLL_OK)
        reply_hll_error(c, op->check, rc);
    else
        tl_reply_int(c, op->changed ? 1 : 0);
    tl_hll_add_free(op);
}

/* ---- PFCOUNT ------------------------------------------------------------------------------- */

struct pfcount_op {
    struct hll *h;
    int check;
    uint64_t card;
    char *buf;
};

/* One key: the cached estimate, or a fresh one stored back into the header. */
static int pfcount_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct pfcount_op *op = arg;
    if (!found) {
        op->card = 0;
        return TL_UPDATE_KEEP;
    }
    op->check = hll_decode(cur, op->h);
    if (op->check != HLL_OK)
        return TL_UPDATE_KEEP;
    if (op->h->card_valid) {
        op->card = op->h->card;
        return TL_UPDATE_KEEP;
    }
    op->card = tl_hll_estimate(op->h->reg);
    /* Only the header changes: the registers' bytes stay exactly as they were. */
    size_t len = cur->len;
    op->buf = malloc(len);
    if (!op->buf)
        return -ENOMEM;
    memcpy(op->buf, cur->bytes, len);
    for (int b = 0; b < 8; b++)
        op->buf[HLL_CARD_OFFSET + b] = (char)(op->card >> (8 * b));
    next->type = TL_VAL_BYTES;
    next->bytes = op->buf;
    next->len = len;
    next->expire_ms = cur->expire_ms;
    return TL_UPDATE_PUT;
}

static void merge_registers(const struct hll *h, uint8_t *max)
{
    for (unsigned i = 0; i < HLL_REGISTERS; i++)
        if (h->reg[i] > max[i])
            max[i] = h->reg[i];
}

/* Takes the register-wise maximum of the HLLs at argv[from..argc) into max (the union, as
 * PFCOUNT of several keys and PFMERGE need it); *any_dense (may be NULL) tells whether one of
 * them was dense. Missing keys count as empty. On a bad value it replies the error itself and
 * returns false. h is scratch space. */
static bool union_registers(struct tl_client *c, struct tl_args *a, int from, uint8_t *max,
                            struct hll *h, bool *any_dense)
{
    for (int j = from; j < a->argc; j++) {
        int rc = key_read_hll(c, a->argv[j], a->len[j], h);
        if (rc == -HLL_NOT_HLL || rc == -HLL_CORRUPTED || rc == -HLL_TYPED) {
            reply_hll_error(c, -rc, 0);
            return false;
        }
        if (rc < 0) {
            tl_reply_engine_error(c, rc);
            return false;
        }
        if (rc == 0)
            continue;
        if (any_dense && h->encoding == HLL_ENC_DENSE)
            *any_dense = true;
        merge_registers(h, max);
    }
    return true;
}

struct tl_hll_union {
    struct hll h;
    uint8_t max[HLL_REGISTERS];
};

struct tl_hll_union *tl_hll_union_new(void)
{
    return calloc(1, sizeof(struct tl_hll_union));
}

int tl_hll_union_add(struct tl_hll_union *u, const struct tl_val *v)
{
    if (hll_decode(v, &u->h) != HLL_OK)
        return -1;
    merge_registers(&u->h, u->max);
    return 0;
}

uint64_t tl_hll_union_count(const struct tl_hll_union *u)
{
    return tl_hll_estimate(u->max);
}

void tl_hll_union_free(struct tl_hll_union *u)
{
    free(u);
}

static void cmd_pfcount(struct tl_client *c, struct tl_args *a)
{
    struct hll *h = malloc(sizeof *h);
    uint8_t *max = NULL;
    if (!h)
        goto nomem;
    if (a->argc == 2) {
        struct pfcount_op op = {.h = h};
        int rc = tl_key_update(c, a->argv[1], a->len[1], pfcount_update, &op);
        if (rc < 0 || op.check != HLL_OK)
            reply_hll_error(c, op.check, rc);
        else
            tl_reply_int(c, (int64_t)op.card);
        free(op.buf);
        free(h);
        return;
    }
    /* Several keys: the estimate of their union, cached nowhere. */
    max = calloc(1, HLL_REGISTERS);
    if (!max)
        goto nomem;
    if (union_registers(c, a, 1, max, h, NULL))
        tl_reply_int(c, (int64_t)tl_hll_estimate(max));
    free(max);
    free(h);
    return;
nomem:
    free(h);
    tl_reply_engine_error(c, -ENOMEM);
}

/* ---- PFMERGE ------------------------------------------------------------------------------- */

struct pfmerge_op {
    const uint8_t *max; /* the sources' union */
    bool any_dense;     /* a source was dense: so is the result */
    struct hll *scratch;
    int check;
    struct hll_bytes b;
};

/* Sets the registers of the union into the destination one by one, in index order, as PFADD
 * sets them (see above), so that a sparse destination gets Redis's bytes. */
static int pfmerge_update(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct pfmerge_op *op = arg;
    int rc;
    if (found) {
        op->check = hll_decode(cur, op->scratch);
        if (op->check != HLL_OK)
            return TL_UPDATE_KEEP;
        op->b.len = op->b.cap = cur->len;
        op->b.p = malloc(cur->len);
        if (!op->b.p)
            return -ENOMEM;
        memcpy(op->b.p, cur->bytes, cur->len);
    } else {
        if ((rc = hll_bytes_new(&op->b)) < 0)
            return rc;
    }
    if (op->any_dense && op->b.p[4] == HLL_ENC_SPARSE &&
        (rc = bytes_to_dense(&op->b, op->scratch)) < 0)
        return rc;
    for (unsigned i = 0; i < HLL_REGISTERS; i++) {
        if (op->max[i] == 0)
            continue;
        if ((rc = hll_bytes_set(&op->b, i, op->max[i], op->scratch)) < 0)
            return rc;
    }
    op->b.p[HLL_CARD_OFFSET + 7] |= HLL_CARD_INVALID;
    next->type = TL_VAL_BYTES;
    next->bytes = (char *)op->b.p;
    next->len = op->b.len;
    next->expire_ms = found ? cur->expire_ms : 0;
    return TL_UPDATE_PUT;
}

static void cmd_pfmerge(struct tl_client *c, struct tl_args *a)
{
    struct hll *h = malloc(sizeof *h);
    uint8_t *max = calloc(1, HLL_REGISTERS);
    struct pfmerge_op op = {.max = max, .scratch = h};
    if (!h || !max) {
        tl_reply_engine_error(c, -ENOMEM);
        goto out;
    }
    /* From argv[1]: the destination is read as a source first, as Redis does, so that the
     * first bad key in that order names the error. */
    if (!union_registers(c, a, 1, max, h, &op.any_dense))
        goto out;
    int rc = tl_key_update(c, a->argv[1], a->len[1], pfmerge_update, &op);
    if (rc < 0 || op.check != HLL_OK)
        reply_hll_error(c, op.check, rc);
    else
        tl_reply_ok(c);
out:
    free(op.b.p);
    free(max);
    free(h);
}

/* ---- the table ----------------------------------------------------------------------------- */

#define W  TL_CMD_WRITE
#define RO TL_CMD_READONLY
#define F  TL_CMD_FAST
#define X  TL_CMD_EXCLUSIVE

/* PFCOUNT shows as readonly, as in Redis 7 (where it is also "may_replicate"), though it may
 * store the estimate in the key's header. PFMERGE reads its sources and writes its destination
 * with other clients excluded, so the merge is atomic as Redis's is. */
const struct tl_command tl_commands_hll[] = {
    {"pfadd", -2, W | F, 1, 1, 1, cmd_pfadd, "hyperloglog", "2.8.9",
     "Adds elements to a HyperLogLog key, creating it if missing.", "O(1) per element",
     "key [element [element ...]]", NULL},
    {"pfcount", -2, RO, 1, -1, 1, cmd_pfcount, "hyperloglog", "2.8.9",
     "Returns the approximate number of distinct elements in the union of HyperLogLog keys.",
     "O(1) for one key, O(N) for N keys", "key [key ...]", NULL},
    {"pfmerge", -2, W | X, 1, -1, 1, cmd_pfmerge, "hyperloglog", "2.8.9",
     "Merges HyperLogLog keys into a destination key.", "O(N) for N keys",
     "destkey [sourcekey [sourcekey ...]]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
