/*
 * server_harness.c - starting and stopping the server under test, and raw RESP connections.
 *
 * Provides what server_harness.h declares: tallyd (or redis-server, with
 * TALLY_TEST_SERVER=redis) started on a free loopback port with its own data directory and
 * log, waited for until it answers PING (not -LOADING), stopped with a signal and reaped; a
 * timer that kills every server when the test runs too long; and RESP connections over plain
 * sockets that send multibulk commands and read one complete RESP2/RESP3 frame at a time.
 * Shared by test_server.c, test_compat.c and test_server_limits.c.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

/* ---- the server under test ------------------------------------------------------------------ */

static struct test_server *srv_running[SRV_MAX];

/* TALLY_TEST_SERVER=redis runs a real redis-server instead: a check of the test itself. */
bool srv_is_redis(void)
{
    const char *e = getenv("TALLY_TEST_SERVER");
    return e && strcmp(e, "redis") == 0;
}

/* tallyd's binary, whatever TALLY_TEST_SERVER says. */
static const char *tallyd_binary(void)
{
    const char *e = getenv("TALLYD");
    if (e && *e)
        return e;
    if (access("server/tallyd", X_OK) == 0)
        return "server/tallyd";
    if (access("../server/tallyd", X_OK) == 0)
        return "../server/tallyd";
    fprintf(stderr, "tallyd not found: set TALLYD, or build server/tallyd\n");
    exit(1);
}

const char *srv_binary(void)
{
    return srv_is_redis() ? "redis-server" : tallyd_binary();
}

static int srv_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void srv_kill_all(void)
{
    for (int i = 0; i < SRV_MAX; i++)
        if (srv_running[i] && srv_running[i]->pid > 0)
            kill(srv_running[i]->pid, SIGKILL);
}

static void srv_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test timed out: killing the servers\n";
    srv_kill_all();
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(1);
    _exit(1);
}

static void srv_atexit(void)
{
    for (int i = 0; i < SRV_MAX; i++) {
        if (srv_running[i] && srv_running[i]->pid > 0) {
            kill(srv_running[i]->pid, SIGKILL);
            waitpid(srv_running[i]->pid, NULL, 0);
            srv_running[i]->pid = 0;
        }
    }
}

/* Bounds the whole test in time; the servers die with the test (PR_SET_PDEATHSIG). */
void srv_setup(unsigned alarm_s)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, srv_on_alarm);
    alarm(alarm_s);
    atexit(srv_atexit);
}

void srv_print_log(const struct test_server *s)
{
    char cmd[4400];
    fprintf(stderr, "--- %s (last lines) ---\n", s->log);
    fflush(stderr);
    snprintf(cmd, sizeof cmd, "tail -n 40 '%s' >&2", s->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* connect(), carried through a signal: a blocking connect interrupted by one (EINTR; with
 * SO_SNDTIMEO set even SA_RESTART does not restart it) goes on in the background, and calling it
 * again would answer EALREADY, so wait for the socket to be writable and take the outcome from
 * SO_ERROR. Returns 0 or -1 with errno. */
static int connect_retry(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int rc;
    do
        rc = poll(&p, 1, CONN_TIMEOUT_S * 1000);
    while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
        if (rc == 0)
            errno = ETIMEDOUT;
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        return -1;
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

/* Whether the server answers PING with anything but -LOADING (a restarted server accepts
 * connections while it still loads its data). */
static bool srv_answers(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    char line[64];
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (send(fd, "PING\r\n", 6, MSG_NOSIGNAL) != 6)
        return false;
    ssize_t n = recv(fd, line, sizeof line - 1, 0);
    if (n <= 0)
        return false;
    line[n] = 0;
    return strncmp(line, "-LOADING", 8) != 0;
}

/* Starts the server on a free loopback port with the options in s->opts, and waits until it
 * answers. A port taken between the probe and the server's bind is retried with another.
 * Exits 77 when tallyd reports that io_uring is unavailable. */
void srv_start(struct test_server *s)
{
    bool redis = s->redis;
    const char *bin = redis ? "redis-server" : tallyd_binary();
    const char *argv[8 + 4 * SRV_MAX_OPTS];
    static char names[SRV_MAX_OPTS][128];
    char port[16], olimit[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    if (redis) {
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "yes";
    }
    for (int i = 0; i < s->n_opts; i++) {
        const char *name = s->opts[2 * i], *value = s->opts[2 * i + 1];
        if (redis && strcmp(name, "fsync") == 0) {
            name = "appendfsync";
        } else if (redis && strcmp(name, "client-output-buffer-limit") == 0) {
            snprintf(olimit, sizeof olimit, "normal %s %s 0", value, value);
            value = olimit;
        } else if (redis && strcmp(name, "io-threads") == 0) {
            continue;
        }
        snprintf(names[i], sizeof names[i], "--%s", name);
        argv[n++] = names[i];
        argv[n++] = value;
    }
    argv[n] = NULL;

    for (int attempt = 1; attempt <= SRV_START_ATTEMPTS; attempt++) {
        s->port = srv_free_port();
        snprintf(port, sizeof port, "%d", s->port);
        snprintf(s->log, sizeof s->log, "%s.%d.log", s->dir, ++s->starts);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            FILE *log = freopen(s->log, "w", stderr);
            if (!log || dup2(2, 1) < 0)
                _exit(126);
            execvp(bin, (char *const *)argv);
            fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
            _exit(127);
        }
        s->pid = pid;
        for (int i = 0; i < SRV_MAX; i++) {
            if (!srv_running[i] || srv_running[i] == s) {
                srv_running[i] = s;
                break;
            }
        }
        bool exited = false;
        for (int waited = 0; waited < SRV_WAIT_MS && !exited; waited += 10) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                s->pid = 0;
                exited = true;
                char cmd[4400];
                snprintf(cmd, sizeof cmd, "grep -qE '%s' '%s'", SRV_NO_URING, s->log);
                if (system(cmd) == 0) {
                    srv_print_log(s);
                    fprintf(stderr, "SKIP: the server cannot use io_uring here\n");
                    exit(TEST_SKIP);
                }
                snprintf(cmd, sizeof cmd, "grep -qi 'already in use' '%s'", s->log);
                if (system(cmd) == 0 && attempt < SRV_START_ATTEMPTS) {
                    fprintf(stderr, "port %d was taken: trying another\n", s->port);
                    break;
                }
                srv_print_log(s);
                fprintf(stderr, "%s exited at start (status %d)\n", bin, st);
                exit(1);
            }
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)s->port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            int rc = connect_retry(fd, (struct sockaddr *)&a, sizeof a);
            if (rc == 0 && srv_answers(fd)) {
                close(fd);
                return;
            }
            close(fd);
            usleep(10000);
        }
        if (!exited)
            break;
    }
    srv_print_log(s);
    fprintf(stderr, "%s did not answer on port %d within %d ms\n", bin, s->port, SRV_WAIT_MS);
    exit(1);
}

/* Sends sig and waits for the exit (SIGKILL after SRV_STOP_MS). Returns the wait status. */
int srv_stop_with(struct test_server *s, int sig)
{
    int st = 0;
    if (s->pid <= 0)
        return 0;
    kill(s->pid, sig);
    for (int waited = 0;; waited += 10) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            break;
        if (waited >= SRV_STOP_MS) {
            fprintf(stderr, "server %d did not stop within %d ms of signal %d: killing it\n",
                    (int)s->pid, SRV_STOP_MS, sig);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            st = -1;
            break;
        }
        usleep(10000);
    }
    s->pid = 0;
    return st;
}

void srv_add_opt(struct test_server *s, const char *name, const char *value)
{
    if (s->n_opts >= SRV_MAX_OPTS)
        exit(1);
    s->opts[2 * s->n_opts] = name;
    s->opts[2 * s->n_opts + 1] = value;
    s->n_opts++;
}

/* A fresh data directory under a temporary directory for the test. */
void srv_init(struct test_server *s, const char *tmpdir, const char *name)
{
    memset(s, 0, sizeof *s);
    s->redis = srv_is_redis();
    snprintf(s->dir, sizeof s->dir, "%s/%s", tmpdir, name);
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST) {
        perror(s->dir);
        exit(1);
    }
}

void srv_init_redis(struct test_server *s, const char *tmpdir, const char *name)
{
    srv_init(s, tmpdir, name);
    s->redis = true;
}

/* ---- raw RESP over a socket ----------------------------------------------------------------- */

int conn_open(struct conn *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = CONN_TIMEOUT_S};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect_retry(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

int conn_send(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends argv as a RESP multibulk. */
int conn_send_cmd(struct conn *c, int argc, char **argv, const size_t *lens)
{
    size_t cap = 32;
    for (int i = 0; i < argc; i++)
        cap += lens[i] + 32;
    char *out = malloc(cap);
    if (!out)
        return -1;
    size_t n = (size_t)snprintf(out, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        n += (size_t)snprintf(out + n, cap - n, "$%zu\r\n", lens[i]);
        memcpy(out + n, argv[i], lens[i]);
        n += lens[i];
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    int rc = conn_send(c, out, n);
    free(out);
    return rc;
}

/* Length of the line at p (up to and including CRLF), or 0 when incomplete. */
size_t resp_line(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (p[i] == '\r' && p[i + 1] == '\n')
            return i + 2;
    return 0;
}

/* The decimal length or count of a '$', '*' or similar header, whole; 0, or -1 if malformed. */
static int resp_length(const char *num, long *n)
{
    char *end;
    *n = strtol(num, &end, 10);
    return *end || end == num ? -1 : 0;
}

/* The length of the complete RESP2 or RESP3 frame at p, RESP_INCOMPLETE or RESP_MALFORMED. */
long resp_frame(const char *p, size_t len, int depth)
{
    if (len == 0)
        return RESP_INCOMPLETE;
    if (depth > RESP_MAX_DEPTH)
        return RESP_MALFORMED;
    size_t line = resp_line(p, len);
    if (line == 0)
        return RESP_INCOMPLETE;
    char num[32];
    size_t nl = line - 3 < sizeof num - 1 ? line - 3 : sizeof num - 1;
    memcpy(num, p + 1, nl);
    num[nl] = 0;
    switch (p[0]) {
    case '+':
    case '-':
    case ':':
    case '_':
    case ',':
    case '#':
    case '(':
        return (long)line;
    case '$':
    case '!':
    case '=': {
        long n;
        if (resp_length(num, &n) < 0)
            return RESP_MALFORMED;
        if (n < 0)
            return (long)line;
        if (line + (size_t)n + 2 > len)
            return RESP_INCOMPLETE;
        return (long)(line + (size_t)n + 2);
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
        long n;
        if (resp_length(num, &n) < 0)
            return RESP_MALFORMED;
        if (n < 0)
            return (long)line;
        if (p[0] == '%' || p[0] == '|')
            n *= 2;
        size_t pos = line;
        for (long i = 0; i < n; i++) {
            long f = resp_frame(p + pos, len - pos, depth + 1);
            if (f < 0)
                return f;
            pos += (size_t)f;
        }
        if (p[0] == '|') { /* an attribute precedes the reply it annotates */
            long f = resp_frame(p + pos, len - pos, depth + 1);
            if (f < 0)
                return f;
            pos += (size_t)f;
        }
        return (long)pos;
    }
    default:
        return RESP_MALFORMED;
    }
}

/* Reads exactly one reply; *out points into c->buf and is valid until the next read.
 * Returns its length, or -1 on a closed connection, a timeout or a malformed frame. */
long conn_read_reply(struct conn *c, const char **out, const char **why)
{
    for (;;) {
        long f = resp_frame(c->buf, c->len, 0);
        if (f == RESP_MALFORMED) {
            *why = "malformed reply";
            return -1;
        }
        if (f > 0) {
            *out = c->buf;
            return f;
        }
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 131072;
            char *b = realloc(c->buf, cap);
            if (!b)
                exit(1);
            c->buf = b;
            c->cap = cap;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            *why = "connection closed";
            return -1;
        }
        if (r < 0) {
            *why = errno == EAGAIN ? "timed out" : strerror(errno);
            return -1;
        }
        c->len += (size_t)r;
    }
}

/* Drops the reply just read. */
void conn_consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

void escape_into(char *out, size_t cap, const char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r')
            o += (size_t)snprintf(out + o, cap - o, "\\r");
        else if (ch == '\n')
            o += (size_t)snprintf(out + o, cap - o, "\\n");
        else if (ch == '"' || ch == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    if (o + 8 >= cap && cap > 4)
        o = (size_t)snprintf(out + cap - 5, 5, "...") + cap - 5;
    out[o < cap ? o : cap - 1] = 0;
}
