/*
 * record.c - encoding entry values and folding a key's layers (format in record.h).
 *
 * Merge deltas are summed with wrapping unsigned arithmetic: the engine accepts an increment
 * only if the running value stays within int64, so the true final value is in range, and a
 * sum taken modulo 2^64 gives it exactly even when a partial sum of deltas would overflow.
 */
#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "error.h"

size_t tl_record_encoded_len(const struct tl_record *r)
{
    size_t n = 1;
    if (r->has_expiry)
        n += tl_varint_len((uint64_t)r->expire_ms);
    switch (r->kind) {
    case TL_KIND_PUT_INT:
    case TL_KIND_MERGE_INT:
        n += tl_varint_len(tl_zigzag(r->i));
        break;
    case TL_KIND_PUT_TYPED:
        n += 1 + r->len;
        break;
    case TL_KIND_PUT_BYTES:
        n += r->len;
        break;
    }
    return n;
}

size_t tl_record_encode(const struct tl_record *r, uint8_t *out)
{
    size_t n = 0;
    out[n++] = (uint8_t)(r->kind | (r->has_expiry ? TL_KIND_FLAG_EXPIRY : 0));
    if (r->has_expiry)
        n += tl_put_varint(out + n, (uint64_t)r->expire_ms);
    switch (r->kind) {
    case TL_KIND_PUT_INT:
    case TL_KIND_MERGE_INT:
        n += tl_put_varint(out + n, tl_zigzag(r->i));
        break;
    case TL_KIND_PUT_TYPED:
        out[n++] = r->tag;
        __attribute__((fallthrough));
    case TL_KIND_PUT_BYTES:
        if (r->len)
            memcpy(out + n, r->bytes, r->len);
        n += r->len;
        break;
    }
    return n;
}

int tl_record_decode(const uint8_t *p, size_t len, struct tl_record *r)
{
    const uint8_t *end = p + len;
    if (len < 1)
        return TL_ECORRUPT;
    memset(r, 0, sizeof *r);
    r->kind = p[0] & TL_KIND_MASK;
    r->has_expiry = (p[0] & TL_KIND_FLAG_EXPIRY) != 0;
    p++;
    if (r->has_expiry) {
        uint64_t e;
        size_t n = tl_get_varint(p, end, &e);
        if (!n)
            return TL_ECORRUPT;
        r->expire_ms = (int64_t)e;
        p += n;
    }
    switch (r->kind) {
    case TL_KIND_PUT_INT:
    case TL_KIND_MERGE_INT: {
        uint64_t z;
        size_t n = tl_get_varint(p, end, &z);
        if (!n || p + n != end)
            return TL_ECORRUPT;
        r->i = tl_unzigzag(z);
        return 0;
    }
    case TL_KIND_PUT_TYPED:
        if (p == end || *p == 0)
            return TL_ECORRUPT;
        r->tag = *p++;
        __attribute__((fallthrough));
    case TL_KIND_PUT_BYTES:
        r->bytes = p;
        r->len = (size_t)(end - p);
        return 0;
    case TL_KIND_DELETE:
        return p == end ? 0 : TL_ECORRUPT;
    case TL_KIND_EXPIRE:
        return p == end && r->has_expiry ? 0 : TL_ECORRUPT;
    }
    return TL_ECORRUPT;
}

void tl_fold_init(struct tl_fold *f)
{
    memset(f, 0, sizeof *f);
}

void tl_fold_free(struct tl_fold *f)
{
    free(f->owned);
    f->owned = NULL;
}

int tl_fold_own_bytes(struct tl_fold *f)
{
    if (!f->done || !tl_kind_has_bytes(f->base.kind) || f->base.bytes == f->owned)
        return 0;
    uint8_t *copy = malloc(f->base.len ? f->base.len : 1);
    if (!copy)
        return tl_error(-ENOMEM, "out of memory for a value of %zu bytes", f->base.len);
    if (f->base.len)
        memcpy(copy, f->base.bytes, f->base.len);
    free(f->owned);
    f->owned = copy;
    f->base.bytes = copy;
    return 0;
}

bool tl_fold_add(struct tl_fold *f, const struct tl_record *older)
{
    if (f->done)
        return true;
    f->any = true;
    switch (older->kind) {
    case TL_KIND_MERGE_INT:
        f->delta += (uint64_t)older->i;
        f->have_merge = true;
        /* a merge may carry an expiry as well */
        __attribute__((fallthrough));
    case TL_KIND_EXPIRE:
        if (older->has_expiry && !f->have_expiry) {
            f->have_expiry = true;
            f->expire_ms = older->expire_ms;
        }
        break;
    default:
        f->base = *older;
        f->done = true;
    }
    return f->done;
}

int tl_fold_result(const struct tl_fold *f, bool bottom, int64_t now_ms, struct tl_record *out)
{
    memset(out, 0, sizeof *out);
    if (f->done || bottom) {
        const struct tl_record *b = f->done ? &f->base : NULL;
        int64_t base_expire = b && b->has_expiry ? b->expire_ms : 0;
        if (!b || b->kind == TL_KIND_DELETE) {
            if (!f->have_merge) {
                out->kind = TL_KIND_DELETE;
                return 0;
            }
            out->kind = TL_KIND_PUT_INT;
            out->i = (int64_t)f->delta;
            base_expire = 0;
        } else if (b->kind == TL_KIND_PUT_INT) {
            out->kind = TL_KIND_PUT_INT;
            out->i = (int64_t)((uint64_t)b->i + f->delta);
        } else {
            if (f->have_merge)
                return TL_ENOTINT;
            *out = *b;
        }
        int64_t e = f->have_expiry ? f->expire_ms : base_expire;
        out->has_expiry = e != 0;
        out->expire_ms = e;
        if (now_ms > 0 && tl_expired(e, now_ms)) {
            memset(out, 0, sizeof *out);
            out->kind = TL_KIND_DELETE;
        }
        return 0;
    }
    if (f->have_expiry && now_ms > 0 && tl_expired(f->expire_ms, now_ms)) {
        out->kind = TL_KIND_DELETE;
        return 0;
    }
    if (f->have_merge) {
        out->kind = TL_KIND_MERGE_INT;
        out->i = (int64_t)f->delta;
    } else {
        out->kind = TL_KIND_EXPIRE;
    }
    out->has_expiry = f->have_expiry;
    out->expire_ms = f->have_expiry ? f->expire_ms : 0;
    if (out->kind == TL_KIND_EXPIRE && !out->has_expiry)
        out->has_expiry = true; /* an EXPIRE always carries its time (0: persist) */
    return 0;
}

int tl_record_to_val(const struct tl_record *r, struct tl_val *out)
{
    memset(out, 0, sizeof *out);
    switch (r->kind) {
    case TL_KIND_PUT_INT:
        out->type = TL_VAL_INT;
        out->i = r->i;
        break;
    case TL_KIND_PUT_BYTES:
    case TL_KIND_PUT_TYPED:
        out->type = r->kind == TL_KIND_PUT_TYPED ? TL_VAL_TYPED : TL_VAL_BYTES;
        out->tag = r->tag;
        out->bytes = malloc(r->len + 1);
        if (!out->bytes)
            return tl_error(-ENOMEM, "out of memory for a value of %zu bytes", r->len);
        if (r->len)
            memcpy(out->bytes, r->bytes, r->len);
        out->bytes[r->len] = '\0';
        out->len = r->len;
        break;
    default:
        return 0;
    }
    out->expire_ms = r->has_expiry ? r->expire_ms : 0;
    return 1;
}
