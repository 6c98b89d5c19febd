/*
 * fuzz_resp.c - libFuzzer target for the request parser (server/resp.c).
 *
 * The input is fed as a connection would feed it: in pieces whose sizes come from the input's
 * first bytes, appended to a query buffer that is parsed in a loop until the parser wants more
 * or rejects it. Small limits make every limit path reachable. Each accepted request is
 * checked: lengths inside what was received, each argument NUL-terminated, the consumed count
 * within the buffer; a NEED_MORE must ask for more than is buffered, and a request the
 * peek (tl_peek_request) passes over must be the one parsed. Each request's arguments
 * are also encoded back as a reply, to run the encoders over arbitrary bytes.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iserver -Istorage tests/fuzz_resp.c
 *        server/resp.c server/buf.c -o fuzz_resp
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Small limits so that the over-limit paths are reached by short inputs. */
#define FUZZ_MAX_BULK      64
#define FUZZ_MAX_MULTIBULK 16
#define FUZZ_INLINE_MAX    128
/* The input's first bytes choose the piece sizes; this many at most. */
#define FUZZ_SPLIT_BYTES 4

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Parses everything buffered; returns false once the connection would be closed. */
static bool drain(struct tl_buf *q, const struct tl_parse_limits *lim, struct tl_client *c)
{
    size_t off = 0;
    bool open = true;
    for (;;) {
        struct tl_args a;
        size_t used;
        char err[128];
        int r = tl_parse_request(q->data + off, q->len - off, lim, &a, &used, err, sizeof err);
        const char *key;
        size_t klen;
        size_t peeked = tl_peek_request(q->data + off, q->len - off, &key, &klen);
        if (r == TL_PARSE_NEED_MORE) {
            check(peeked == 0);
            check(used > q->len - off);
            check(a.argc == 0 && a.argv == NULL);
            break;
        }
        if (r == TL_PARSE_ERROR) {
            check(strncmp(err, "ERR ", 4) == 0);
            check(a.argc == 0 && a.argv == NULL);
            tl_reply_error(c, err);
            open = false;
            break;
        }
        check(r == TL_PARSE_OK);
        check(used > 0 && used <= q->len - off);
        /* A peeked request is the one parsed, its key the second argument. */
        check(peeked == 0 || (peeked == used && a.argc >= 1 && a.argc <= TL_PEEK_MAX_ARGS));
        check(peeked == 0 || a.argc < 2 || (klen == a.len[1] && memcmp(key, a.argv[1], klen) == 0));
        /* A multibulk request has at most FUZZ_MAX_MULTIBULK arguments, an inline one at most
         * one per two bytes of its line. */
        check(a.argc >= 0 && a.argc <= FUZZ_INLINE_MAX / 2 + 1);
        for (int i = 0; i < a.argc; i++) {
            check(a.len[i] <= used);
            check(a.argv[i][a.len[i]] == '\0');
        }
        tl_reply_array(c, (size_t)a.argc);
        for (int i = 0; i < a.argc; i++)
            tl_reply_bulk(c, a.argv[i], a.len[i]);
        if (a.argc > 0)
            tl_reply_error(c, a.argv[0]);
        tl_args_free(&a);
        off += used;
    }
    tl_buf_consume(q, off);
    c->out.len = 0;
    return open;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tl_parse_limits lim = {
        .max_bulk_len = FUZZ_MAX_BULK,
        .max_multibulk_len = FUZZ_MAX_MULTIBULK,
        .inline_max_size = FUZZ_INLINE_MAX,
        .unauthenticated = size > 0 && (data[0] & 0x80),
    };
    uint8_t split[FUZZ_SPLIT_BYTES] = {0};
    size_t nsplit = size < FUZZ_SPLIT_BYTES ? size : FUZZ_SPLIT_BYTES;
    memcpy(split, data, nsplit);
    data += nsplit;
    size -= nsplit;

    struct tl_client c;
    memset(&c, 0, sizeof c);
    c.resp = (split[0] & 1) ? 3 : 2;
    struct tl_buf q = {0};
    size_t fed = 0;
    for (int i = 0; fed < size; i++) {
        size_t piece = 1 + split[i % FUZZ_SPLIT_BYTES] % 64;
        if (piece > size - fed)
            piece = size - fed;
        if (tl_buf_append(&q, data + fed, piece) != 0)
            break;
        fed += piece;
        if (!drain(&q, &lim, &c))
            break;
    }
    tl_buf_free(&q);
    tl_buf_free(&c.out);
    return 0;
}
