/*
 * server_harness.h - the server under test, for the server tests (test_server, test_compat,
 * test_server_limits).
 *
 * Provides:
 * - starting tallyd (or, with TALLY_TEST_SERVER=redis, redis-server, to check a test itself) on
 *   a free loopback port with a data directory under the test's temporary directory, waiting
 *   until it answers PING, restarting it, and stopping it with a signal (srv_*); a port taken
 *   between the probe and the server's bind is retried, and a tallyd that cannot use io_uring
 *   makes the test exit 77 (SKIP);
 * - a bound on the whole test in time (srv_setup): the servers are killed when it runs out,
 *   and die with the test in any case;
 * - raw RESP connections (conn_*): sending bytes or a command as a multibulk, and reading
 *   exactly one RESP2 or RESP3 reply, whose frame length resp_frame computes.
 *
 * Environment: TALLYD (the binary; else server/tallyd, ../server/tallyd), TALLY_TEST_SERVER.
 */
#ifndef TL_SERVER_HARNESS_H
#define TL_SERVER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SRV_MAX            4 /* servers running at once in one test */
#define SRV_WAIT_MS        10000
#define SRV_STOP_MS        15000
#define SRV_MAX_OPTS       16
#define SRV_START_ATTEMPTS 5
/* What tallyd prints when it exits for want of io_uring (main.c, net.c). */
#define SRV_NO_URING "io_uring is required|cannot set up io_uring"
/* conn_open's receive and send timeouts, and the longest wait for an interrupted connect. */
#define CONN_TIMEOUT_S 10

struct test_server {
    bool redis; /* redis-server rather than tallyd (srv_init: as TALLY_TEST_SERVER says) */
    pid_t pid;
    int port;
    char dir[4096]; /* the data directory */
    char log[4200]; /* the server's stdout and stderr, one file per start */
    int starts;
    int n_opts;
    const char *opts[2 * SRV_MAX_OPTS]; /* name, value: --name value */
};

/* Whether TALLY_TEST_SERVER=redis asks for a real redis-server instead of tallyd. */
bool srv_is_redis(void);
/* The server binary to run (exits when tallyd cannot be found). */
const char *srv_binary(void);
/* Bounds the whole test to alarm_s seconds, ignores SIGPIPE, and kills the servers at exit. */
void srv_setup(unsigned alarm_s);
/* A fresh data directory tmpdir/name; no options. */
void srv_init(struct test_server *s, const char *tmpdir, const char *name);
/* The same for a redis-server beside tallyd (a differential test), whatever TALLY_TEST_SERVER
 * says. */
void srv_init_redis(struct test_server *s, const char *tmpdir, const char *name);
/* Adds --name value to the next starts (mapped to redis-server's names where they differ). */
void srv_add_opt(struct test_server *s, const char *name, const char *value);
/* Starts the server and waits until it answers; exits 1 on failure, 77 without io_uring. */
void srv_start(struct test_server *s);
/* Sends sig and waits for the exit (SIGKILL after SRV_STOP_MS). Returns the wait status. */
int srv_stop_with(struct test_server *s, int sig);
/* Prints the last lines of the server's log to stderr. */
void srv_print_log(const struct test_server *s);

struct conn {
    int fd;
    char *buf; /* bytes received and not yet consumed */
    size_t len, cap;
};

/* Connects to the loopback port; 0, or -1 with errno. */
int conn_open(struct conn *c, int port);
void conn_close(struct conn *c);
/* Sends n bytes; 0 or -1. */
int conn_send(struct conn *c, const char *p, size_t n);
/* Sends argv as a RESP multibulk; 0 or -1. */
int conn_send_cmd(struct conn *c, int argc, char **argv, const size_t *lens);
/* Reads exactly one reply; *out points into c->buf and is valid until the next read.
 * Returns its length, or -1 (with *why) on a closed connection, a timeout or a malformed frame. */
long conn_read_reply(struct conn *c, const char **out, const char **why);
/* Drops the first n bytes received (the reply just read). */
void conn_consume(struct conn *c, size_t n);

#define RESP_INCOMPLETE (-1)
#define RESP_MALFORMED  (-2)
#define RESP_MAX_DEPTH  32

/* Length of the line at p (up to and including CRLF), or 0 when incomplete. */
size_t resp_line(const char *p, size_t len);
/* The length of the complete RESP2 or RESP3 frame at p, RESP_INCOMPLETE or RESP_MALFORMED;
 * depth is 0 (nesting deeper than RESP_MAX_DEPTH is malformed). */
long resp_frame(const char *p, size_t len, int depth);

/* Writes p[0..n) into out as printable text (\r \n \" \\ \xHH), ending in "..." when it does
 * not fit; for failure messages. */
void escape_into(char *out, size_t cap, const char *p, size_t n);

#endif
