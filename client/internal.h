/*
 * internal.h - what libtally's files share and do not export: the growable byte buffer, the
 * command encoder writing into one, the connection's error setter and its quoting of keys for
 * messages. Every symbol here starts with tlc_; the library exports only tally_*.
 */
#ifndef TALLY_CLIENT_INTERNAL_H
#define TALLY_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "tally.h"

#if defined(__GNUC__)
#define TLC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TLC_PRINTF(f, a)
#endif

/* The longest error message a context or reader keeps; longer ones are cut. */
#define TLC_ERRSTR_BYTES 512
/* How much of a key or argument an error message quotes before "...". */
#define TLC_QUOTE_BYTES 48

/* A growable byte buffer; p is NULL until the first append. */
struct tlc_buf {
    char *p;
    size_t len, cap;
};

/* Makes room for extra more bytes. 0 or TALLY_ERR_NOMEM. */
int tlc_buf_reserve(struct tlc_buf *b, size_t extra);
int tlc_buf_append(struct tlc_buf *b, const void *p, size_t n);
void tlc_buf_free(struct tlc_buf *b);

/* Appends the multibulk encoding of a format and its arguments (tally_format_command's rules)
 * or of an argument vector to out; on failure out is as it was. 0, TALLY_ERR_ARG (message in
 * errbuf) or TALLY_ERR_NOMEM. */
int tlc_vformat_into(struct tlc_buf *out, char *errbuf, size_t errcap, const char *fmt, va_list ap);
int tlc_format_argv_into(struct tlc_buf *out, int argc, const char *const *argv,
                         const size_t *argvlen);

/* Empties a reader (bytes, partial reply, error) and keeps its limits. */
void tlc_reader_reset(tally_reader *r);

/* Sets the context's error code and message; returns code. */
int tlc_fail(tally_ctx *ctx, int code, const char *fmt, ...) TLC_PRINTF(3, 4);
/* Clears the context's error (at the start of every call). */
void tlc_clear_error(tally_ctx *ctx);

/* Writes p[0..n) quoted for a message into out: "k\x00y", cut with "..." past
 * TLC_QUOTE_BYTES. Returns out. */
char *tlc_quote(char *out, size_t cap, const void *p, size_t n);

#endif
