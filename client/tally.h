/*
 * tally.h - libtally, the C client library for Tally (and any server that speaks RESP2/RESP3).
 *
 * A synchronous connection (tally_ctx) over TCP or a Unix socket, with connect and command
 * timeouts; commands built from a printf-like format or from an argument vector; pipelining
 * (append many commands, then read their replies in order); one reply type for RESP2 and RESP3;
 * a reply reader usable on its own with any event loop; and typed helpers for Tally's commands
 * (counters, windowed counters, rate limits, distinct counts, quantiles) that leave no reply
 * parsing to the caller.
 *
 * Ownership, in short (libtally(3) and client/README.md have the whole story):
 * - A tally_ctx is used by one thread at a time; it owns its socket, buffers and error text.
 *   tally_free releases it.
 * - Every tally_reply handed to the caller is the caller's, released with tally_reply_free on
 *   the top-level reply only: the elements belong to their parent.
 * - Strings passed in (keys, formats, arguments) are only read during the call.
 * - tally_errstr's text belongs to the context and is valid until its next call.
 *
 * Every function that can fail returns 0 or a negative TALLY_ERR_* code (or NULL), and leaves
 * a message in the context that says what failed and names the host, key or limit.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 1
#define TALLY_VERSION_PATCH 0

/* ---- error codes ---------------------------------------------------------------------------- */

enum tally_error {
    TALLY_OK = 0,
    TALLY_ERR_IO = -1,       /* a socket call failed (connect, read, write): errno's text */
    TALLY_ERR_EOF = -2,      /* the server closed the connection */
    TALLY_ERR_TIMEOUT = -3,  /* the connect or command timeout ran out */
    TALLY_ERR_PROTOCOL = -4, /* the server's bytes are not valid RESP, or exceed a limit */
    TALLY_ERR_REPLY = -5,    /* the server answered with an error reply (its text is kept) */
    TALLY_ERR_TYPE = -6,     /* the reply is not of the type the helper expects */
    TALLY_ERR_NOMEM = -7,    /* out of memory */
    TALLY_ERR_ARG = -8,      /* a bad argument from the caller (format, NULL, count) */
    TALLY_ERR_RESOLVE = -9,  /* the host name could not be resolved */
    TALLY_ERR_CLOSED = -10,  /* the connection was closed by an earlier error: reconnect */
};

/* A static text for a code ("connection timed out", ...); never NULL. */
const char *tally_strerror(int code);

/* ---- replies -------------------------------------------------------------------------------- */

enum tally_reply_type {
    TALLY_REPLY_STRING = 1, /* bulk string ($): str, len */
    TALLY_REPLY_STATUS,     /* simple string (+): str, len */
    TALLY_REPLY_ERROR,      /* error (-) or bulk error (!): str, len */
    TALLY_REPLY_INTEGER,    /* integer (:): integer */
    TALLY_REPLY_NIL,        /* RESP2 null bulk or array ($-1, *-1), RESP3 null (_) */
    TALLY_REPLY_ARRAY,      /* array (*): elements, element */
    TALLY_REPLY_MAP,        /* map (%): elements = 2 x pairs, element = key, value, key, ... */
    TALLY_REPLY_SET,        /* set (~): elements, element */
    TALLY_REPLY_DOUBLE,     /* double (,): dval, and its text in str, len */
    TALLY_REPLY_BOOL,       /* boolean (#): integer is 1 or 0 */
    TALLY_REPLY_VERBATIM,   /* verbatim string (=): str, len without the prefix; vtype "txt" */
    TALLY_REPLY_BIGNUM,     /* big number ((): its digits in str, len */
    TALLY_REPLY_PUSH,       /* push (>): elements, element */
};

/*
 * One reply. str is NUL-terminated (a convenience: len counts the bytes, NULs included).
 * attribute is the RESP3 attribute map (|) that came just before this reply, or NULL; it is
 * a TALLY_REPLY_MAP owned by this reply.
 */
typedef struct tally_reply {
    enum tally_reply_type type;
    long long integer; /* INTEGER, BOOL */
    double dval;       /* DOUBLE */
    char *str;         /* STRING, STATUS, ERROR, DOUBLE, VERBATIM, BIGNUM; else NULL */
    size_t len;
    char vtype[4];   /* VERBATIM: the three-letter format and a NUL */
    size_t elements; /* ARRAY, SET, PUSH: elements; MAP: keys and values */
    struct tally_reply **element;
    struct tally_reply *attribute;
} tally_reply;

/* Frees a reply handed to the caller, with its elements and attribute. NULL is allowed. */
void tally_reply_free(tally_reply *reply);

/* The type's name ("string", "map", ...), for messages. */
const char *tally_reply_type_name(enum tally_reply_type type);

/* ---- the reply reader, for users with their own event loop ---------------------------------- */

typedef struct tally_reader tally_reader;

#define TALLY_READER_MAX_DEPTH    32                /* aggregates inside aggregates */
#define TALLY_READER_MAX_BULK     (512LL << 20)     /* bytes in one string */
#define TALLY_READER_MAX_ELEMENTS ((1LL << 32) - 1) /* elements in one aggregate */

/* A reader with the default limits above; NULL when out of memory. */
tally_reader *tally_reader_new(void);
/* Sets the limits (a value <= 0 keeps the current one). Replies beyond them are a protocol
 * error. max_depth is at most TALLY_READER_MAX_DEPTH. */
void tally_reader_set_limits(tally_reader *r, int max_depth, long long max_bulk_len,
                             long long max_elements);
/* Appends bytes received; any split is allowed. 0, TALLY_ERR_NOMEM, or TALLY_ERR_PROTOCOL when
 * the reader already failed. */
int tally_reader_feed(tally_reader *r, const void *data, size_t len);
/* Takes the next complete reply: 0 with *reply set (the caller owns it), 0 with *reply NULL
 * when more bytes are needed, or TALLY_ERR_PROTOCOL / TALLY_ERR_NOMEM. A protocol error is
 * final: the reader answers it again until freed. */
int tally_reader_get_reply(tally_reader *r, tally_reply **reply);
/* What went wrong ("protocol error: invalid bulk length '-5' at byte 12"), or "". */
const char *tally_reader_error(const tally_reader *r);
/* Bytes fed and not yet consumed by a complete reply. */
size_t tally_reader_pending(const tally_reader *r);
void tally_reader_free(tally_reader *r);

/* ---- command encoding ----------------------------------------------------------------------- */

/*
 * Encodes a command as a RESP multibulk into *out (malloc'd; the caller frees it), its length
 * in *len. The format is split into arguments at spaces; a conversion is part of the argument
 * it appears in: %s (a C string), %b (a pointer and a size_t: binary-safe bytes), %lld (long
 * long), %% (a percent sign). Returns 0, TALLY_ERR_ARG (the message in errbuf, when not NULL)
 * or TALLY_ERR_NOMEM.
 */
int tally_format_command(char **out, size_t *len, char *errbuf, size_t errcap, const char *fmt,
                         ...);
int tally_vformat_command(char **out, size_t *len, char *errbuf, size_t errcap, const char *fmt,
                          va_list ap);
/* The same from argc arguments; argvlen may be NULL for C strings. */
int tally_format_command_argv(char **out, size_t *len, int argc, const char *const *argv,
                              const size_t *argvlen);

/* ---- connections ---------------------------------------------------------------------------- */

typedef struct tally_ctx tally_ctx;

struct tally_options {
    const char *host;       /* a name or address; with port. Ignored when unix_path is set */
    int port;               /* default 6380 */
    const char *unix_path;  /* a Unix socket's path, instead of host and port */
    int connect_timeout_ms; /* 0: no limit */
    int command_timeout_ms; /* the longest wait for the server to take or send bytes; 0: none */
    int resp;               /* 2 (default) or 3: send HELLO 3 at connect */
    const char *username;   /* with password: AUTH at connect (or HELLO's AUTH); NULL: none */
    const char *password;
};

#define TALLY_DEFAULT_PORT 6380

/*
 * Connect. These return NULL only when out of memory; otherwise check tally_errcode: on
 * failure the context holds the message ("connect to 127.0.0.1:6380: Connection refused") and
 * tally_reconnect may try again. The options' strings are copied.
 */
tally_ctx *tally_connect(const char *host, int port);
tally_ctx *tally_connect_unix(const char *path);
tally_ctx *tally_connect_with(const struct tally_options *opts);
/* Closes the socket (if open) and connects again with the same options, repeating HELLO and
 * AUTH. Commands appended and not yet answered are dropped. 0 or a negative code. */
int tally_reconnect(tally_ctx *ctx);
/* Closes the connection and frees everything the context owns. NULL is allowed. */
void tally_free(tally_ctx *ctx);

/* The last error's code (0 when the last call succeeded) and message ("" then). */
int tally_errcode(const tally_ctx *ctx);
const char *tally_errstr(const tally_ctx *ctx);
/* Changes the command timeout (0: none). 0 or TALLY_ERR_ARG. */
int tally_set_command_timeout(tally_ctx *ctx, int timeout_ms);
/* The socket, or -1 when closed. The library owns it. */
int tally_fd(const tally_ctx *ctx);
/* The reader this connection parses with, to change its limits. Owned by the context. */
tally_reader *tally_ctx_reader(tally_ctx *ctx);

/*
 * One command, one reply. NULL on failure (the code and message in the context); otherwise
 * the reply, which the caller frees with tally_reply_free. An error reply from the server is
 * a reply (TALLY_REPLY_ERROR), not a failure. While appended commands still wait for their
 * replies these refuse to run (TALLY_ERR_ARG), so that no reply is taken for another's.
 */
tally_reply *tally_command(tally_ctx *ctx, const char *fmt, ...);
tally_reply *tally_vcommand(tally_ctx *ctx, const char *fmt, va_list ap);
tally_reply *tally_command_argv(tally_ctx *ctx, int argc, const char *const *argv,
                                const size_t *argvlen);

/* Pipelining: append any number of commands (buffered, not yet sent), then take each reply
 * with tally_get_reply, in order. tally_get_reply sends what is buffered first. */
int tally_append_command(tally_ctx *ctx, const char *fmt, ...);
int tally_append_vcommand(tally_ctx *ctx, const char *fmt, va_list ap);
int tally_append_command_argv(tally_ctx *ctx, int argc, const char *const *argv,
                              const size_t *argvlen);
/* 0 with *reply (the caller's), or a negative code with *reply NULL. */
int tally_get_reply(tally_ctx *ctx, tally_reply **reply);
/* Replies still owed for appended commands. */
size_t tally_pending_replies(const tally_ctx *ctx);

/* ---- typed helpers for Tally's commands ----------------------------------------------------- */

/*
 * Each sends one command and checks its reply. 0 or a negative code; an error reply is
 * TALLY_ERR_REPLY with the server's text first in tally_errstr ("WRONGTYPE Operation against
 * a key holding the wrong kind of value (WINCRBY key \"k\")"). They refuse to run while
 * appended commands wait for their replies. Keys and elements are binary-safe.
 */

/* at_ms for "now" in the windowed commands (no AT argument). */
#define TALLY_NOW INT64_MIN

/* INCRBY key delta: *result (may be NULL) is the new value. */
int tally_incrby(tally_ctx *ctx, const void *key, size_t klen, int64_t delta, int64_t *result);
/* GET key as an integer: *found false (and *value 0) when the key does not exist;
 * TALLY_ERR_TYPE when the value is not an integer. */
int tally_get_int(tally_ctx *ctx, const void *key, size_t klen, int64_t *value, bool *found);

/*
 * WINCRBY key delta [AT at_ms] [POLICY policy] [GET window ...]. policy NULL: the key's policy
 * (or "default"). Without windows (nwindows 0) out[0] is the new value of the current finest
 * bucket; with windows ("1h", "15m", "90s", "1d", seconds) out[i] is the sum over windows[i]
 * after the increment. out may be NULL.
 */
int tally_wincrby(tally_ctx *ctx, const void *key, size_t klen, int64_t delta, int64_t at_ms,
                  const char *policy, size_t nwindows, const char *const *windows, int64_t *out);
/* WGET key window ... [AT at_ms]: sums[i] is the sum over windows[i] (nwindows >= 1). */
int tally_wget(tally_ctx *ctx, const void *key, size_t klen, size_t nwindows,
               const char *const *windows, int64_t at_ms, int64_t *sums);

struct tally_throttle_result {
    bool limited;          /* the action is refused */
    int64_t limit;         /* max_burst + 1 */
    int64_t remaining;     /* actions left now */
    int64_t retry_after_s; /* when to retry if limited; -1 when allowed */
    int64_t reset_after_s; /* when the limit is full again */
};
/* CL.THROTTLE key max_burst count period_s quantity (GCRA, as redis-cell). */
int tally_throttle(tally_ctx *ctx, const void *key, size_t klen, int64_t max_burst, int64_t count,
                   int64_t period_s, int64_t quantity, struct tally_throttle_result *out);

/* PFADD key element ...: *changed (may be NULL) true when the estimate changed. lens may be
 * NULL for C strings. */
int tally_pfadd(tally_ctx *ctx, const void *key, size_t klen, size_t nelements,
                const void *const *elements, const size_t *lens, bool *changed);
/* PFCOUNT key ...: the estimated number of distinct elements over the union of the keys. */
int tally_pfcount(tally_ctx *ctx, size_t nkeys, const void *const *keys, const size_t *klens,
                  int64_t *count);
/* WQUANTILE key window q ...: values[i] is quantile qs[i]; when the window is empty, values[i]
 * is NAN and present[i] (present may be NULL) is false. */
int tally_wquantile(tally_ctx *ctx, const void *key, size_t klen, const char *window, size_t nq,
                    const double *qs, double *values, bool *present);

#ifdef __cplusplus
}
#endif

#endif
