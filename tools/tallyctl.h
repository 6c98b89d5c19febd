/*
 * tallyctl.h - what tallyctl's files share: the options naming the server, a minimal RESP2
 * client (resp_client.c), progress display and byte formatting (progress.c), the data
 * directory's manifest as one picture (inspect.c), and each subcommand's entry point.
 *
 * Subcommands that talk to a live tallyd (stats, compact, checkpoint) are in live.c; those that
 * read a data directory or a table with the engine's own code (verify, sst dump, manifest, and
 * compact --dir) are in inspect.c and live.c. Each returns the process's exit status.
 */
#ifndef TL_TALLYCTL_H
#define TL_TALLYCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "manifest.h"

#define CTL_EXIT_OK    0
#define CTL_EXIT_FAIL  1 /* the operation failed or found problems */
#define CTL_EXIT_USAGE 2

#define CTL_DEFAULT_HOST "127.0.0.1"
#define CTL_DEFAULT_PORT 6380
#define CTL_PATH_BYTES   4096

struct ctl_opts {
    const char *host;
    int port;
    const char *password; /* NULL: no AUTH */
};

/* Prints "tallyctl: <message>" and the usage to stderr; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses a non-negative integer argument of option opt, at most max; false (after a usage
 * message) if it is not one. */
bool ctl_parse_count(const char *opt, const char *s, long long max, long long *out);

/* ---- resp_client.c ---------------------------------------------------------------------- */

enum ctl_reply_type {
    CTL_REPLY_STATUS,
    CTL_REPLY_ERROR,
    CTL_REPLY_INT,
    CTL_REPLY_BULK,
    CTL_REPLY_NIL,
    CTL_REPLY_ARRAY,
};

struct ctl_reply {
    enum ctl_reply_type type;
    long long integer;
    char *str; /* STATUS, ERROR, BULK: NUL-terminated, len bytes */
    size_t len;
    struct ctl_reply *elem; /* ARRAY */
    size_t n;
};
void ctl_reply_free(struct ctl_reply *r);
/* The value after the element equal to name in a flat array of name/value pairs, or NULL. */
const struct ctl_reply *ctl_reply_field(const struct ctl_reply *r, const char *name);

struct ctl_conn {
    int fd;
    char where[300]; /* "host:port", for messages */
    char *buf;       /* received, not yet parsed */
    size_t len, pos, cap;
    char err[512]; /* what went wrong, when a call returns -1 */
};

/* Connects to the server the options name and sends AUTH when a password is given. 0, or -1
 * with c->err set. */
int ctl_connect(struct ctl_conn *c, const struct ctl_opts *o);
/* Sends argv (C strings) as one command and reads its reply into *r. An error reply is a
 * reply: 0 with r->type CTL_REPLY_ERROR. -1 with c->err on a broken connection or bad frame. */
int ctl_command(struct ctl_conn *c, struct ctl_reply *r, int argc, const char *const *argv);
void ctl_close(struct ctl_conn *c);

/* ---- progress.c ------------------------------------------------------------------------- */

/* A progress display on stderr: a bar redrawn in place when stderr is a terminal, otherwise a
 * line at every tenth of the way. */
struct ctl_progress {
    const char *label;
    bool tty;
    bool drawn; /* the bar is on the screen (tty) */
    int last_tenth;
    int last_permille;
    int64_t last_draw_ms;
};
void ctl_progress_init(struct ctl_progress *p, const char *label);
void ctl_progress_update(struct ctl_progress *p, uint64_t done, uint64_t total);
/* Clears the bar so that a message can be printed (it is redrawn at the next update). */
void ctl_progress_clear(struct ctl_progress *p);
/* Ends the display: the bar's line is finished with a newline. */
void ctl_progress_end(struct ctl_progress *p);
/* tl_progress_fn over a struct ctl_progress. */
void ctl_progress_cb(void *arg, uint64_t done, uint64_t total);

/* "1.5 MiB", "312 B" */
void ctl_format_bytes(char *out, size_t cap, uint64_t n);
/* Bytes as printable text: \xHH for the others, \" and \\, cut with "..." past max bytes. */
void ctl_print_escaped(FILE *f, const uint8_t *p, size_t n, size_t max);

/* ---- inspect.c: the manifest as one picture --------------------------------------------- */

struct ctl_manifest {
    char path[CTL_PATH_BYTES]; /* DIR/MANIFEST-NNNNNN */
    size_t edits;
    uint64_t log_number, next_file_number, last_seq;
    struct tl_file_meta *files; /* the live tables, in the order they were added */
    size_t n_files, cap_files;
    /* Edits that add a table already live or remove one that is not, as messages naming the
     * manifest and the offset (verify reports them). */
    char **problems;
    size_t n_problems;
};
/* Reads DIR/CURRENT and replays the manifest it names. 0, or -1 after printing why. */
int ctl_manifest_load(const char *dir, struct ctl_manifest *m);
void ctl_manifest_free(struct ctl_manifest *m);
/* Whether dir holds a Tally database (a CURRENT file); prints why not. */
bool ctl_is_data_dir(const char *dir);

/* ---- subcommands ------------------------------------------------------------------------ */

int ctl_cmd_stats(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_compact(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_checkpoint(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_verify(int argc, char **argv);
int ctl_cmd_sst(int argc, char **argv);
int ctl_cmd_manifest(int argc, char **argv);

#endif
