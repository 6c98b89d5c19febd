/*
 * loadgen.c - a load generator for Redis-protocol servers: requests/s and p50/p99/p999 latency
 * of an arbitrary command mix, pipelined or not, over N connections.
 *
 * An *operation* is one or more commands given on the command line, separated by ";" (so a
 * MULTI / INCR / EXPIRE / EXEC transaction is one operation). In an argument, "__key__" is
 * replaced by the operation's key number (the same in every command of the operation) and
 * "__rand__" by a fresh random number at each occurrence; both are printed as ten digits. The key
 * number is uniform over --keyspace, or with --sequential the operation's index plus --first
 * (every key written once, for loading).
 *
 * Each connection keeps one batch of --pipeline operations in flight: it writes the batch,
 * reads every reply, then writes the next one, as redis-benchmark's -P does. An operation's
 * latency runs from the write of its batch to the arrival of its last reply, and goes into a
 * histogram of 1 us buckets up to HIST_MAX_US (exact to the microsecond below it). Connections
 * are spread over --threads threads, each with its own epoll loop. The replies are not parsed
 * into objects: a small scanner finds where each one ends and whether it holds an error.
 *
 * Output, on stdout: a "#" header line and one line of figures. The exit status is 1 when a
 * connection fails, the server answers with an error or breaks the protocol; never on timing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS    10000
#define MAX_THREADS        64
#define MAX_PIPELINE       100000
#define MAX_COMMANDS       64  /* commands in one operation */
#define MAX_ARGS           256 /* arguments of one command */
#define MAX_REPLY_DEPTH    16
#define KEY_DIGITS         10
#define HIST_MAX_US        1000000 /* latencies above land in one overflow bucket */
#define READ_BUF_BYTES     (64 * 1024)
#define READ_BUF_MAX_BYTES (64 * 1024 * 1024)
#define EPOLL_EVENTS       64

struct command {
    int argc;
    char **argv;
    size_t *lens;
    int *tokens; /* per argument: occurrences of __key__ and __rand__ (0: copied as is) */
};

struct conn {
    int fd;
    uint64_t rng;
    char *out;
    size_t out_len, out_off;
    char *in;
    size_t in_len, in_cap;
    uint64_t batch_ops;     /* operations in the batch in flight */
    uint64_t replies_left;  /* replies still due for that batch */
    uint64_t replies_in_op; /* replies received for the operation being completed */
    uint64_t batch_sent_ns; /* when the batch was written */
    bool want_out;          /* EPOLLOUT registered for a partial write */
};

struct worker {
    pthread_t thread;
    int first_conn, nconns;
    uint64_t *hist; /* HIST_MAX_US + 1 buckets */
    uint64_t ops, errors, max_us;
    uint64_t end_ns;
    int failed;
};

static struct {
    const char *host;
    int port;
    int connections;
    int threads;
    uint64_t pipeline;
    uint64_t requests; /* 0: run for duration_s */
    double duration_s;
    uint64_t keyspace;
    uint64_t first;
    bool sequential;
    uint64_t seed;
    struct command commands[MAX_COMMANDS];
    int ncommands;
    size_t op_bytes_max;
} cfg = {
    .host = "127.0.0.1",
    .port = 6379,
    .connections = 50,
    .threads = 1,
    .pipeline = 1,
    .keyspace = 1000000,
    .seed = 42,
};

static struct conn *conns;
static atomic_uint_fast64_t next_op; /* operations claimed so far */
static atomic_bool error_printed;
static uint64_t start_ns, deadline_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(uint64_t *state)
{
    /* xorshift64* */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static int count_tokens(const char *s)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "__")) != NULL;) {
        if (strncmp(p, "__key__", 7) == 0) {
            n++;
            p += 7;
        } else if (strncmp(p, "__rand__", 8) == 0) {
            n++;
            p += 8;
        } else {
            p += 2;
        }
    }
    return n;
}

/* Appends one argument with its tokens replaced, as a RESP bulk string. */
static char *put_arg(char *o, const char *arg, size_t len, int tokens, uint64_t key, struct conn *c)
{
    char expanded[4096];
    const char *s = arg;
    size_t n = len;
    if (tokens > 0) {
        char *e = expanded;
        const char *p = arg, *end = arg + len;
        while (p < end) {
            if (end - p >= 7 && memcmp(p, "__key__", 7) == 0) {
                e += sprintf(e, "%0*llu", KEY_DIGITS, (unsigned long long)key);
                p += 7;
            } else if (end - p >= 8 && memcmp(p, "__rand__", 8) == 0) {
                uint64_t r = next_random(&c->rng) % cfg.keyspace;
                e += sprintf(e, "%0*llu", KEY_DIGITS, (unsigned long long)r);
                p += 8;
            } else {
                *e++ = *p++;
            }
        }
        s = expanded;
        n = (size_t)(e - expanded);
    }
    o += sprintf(o, "$%zu\r\n", n);
    memcpy(o, s, n);
    o += n;
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

/* Formats operations [first_op, first_op + n) into the connection's output buffer. */
static void format_batch(struct conn *c, uint64_t first_op, uint64_t n)
{
    char *o = c->out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key =
            cfg.sequential ? cfg.first + first_op + i : next_random(&c->rng) % cfg.keyspace;
        for (int k = 0; k < cfg.ncommands; k++) {
            const struct command *cmd = &cfg.commands[k];
            o += sprintf(o, "*%d\r\n", cmd->argc);
            for (int a = 0; a < cmd->argc; a++)
                o = put_arg(o, cmd->argv[a], cmd->lens[a], cmd->tokens[a], key, c);
        }
    }
    c->out_len = (size_t)(o - c->out);
    c->out_off = 0;
}

/* Finds the end of the line starting at p; NULL when it is not complete. */
static const char *line_end(const char *p, const char *end)
{
    const char *q = memchr(p, '\r', (size_t)(end - p));
    return (q != NULL && q + 1 < end) ? q : NULL;
}

/*
 * Skips one complete reply at p. Returns the position after it, NULL when more bytes are
 * needed, or sets *bad on a protocol error. *err is set when the reply is or holds an error.
 */
static const char *skip_reply(const char *p, const char *end, int depth, bool *err, bool *bad)
{
    if (p >= end)
        return NULL;
    if (depth > MAX_REPLY_DEPTH) {
        *bad = true;
        return NULL;
    }
    char type = *p;
    const char *eol = line_end(p + 1, end);
    if (eol == NULL)
        return NULL;
    const char *next = eol + 2;
    long long n;
    switch (type) {
    case '-':
        *err = true;
        return next;
    case '!': /* a RESP3 blob error has a length, as a bulk string does */
        *err = true;
        /* fall through */
    case '$':
    case '=':
        n = strtoll(p + 1, NULL, 10);
        if (n < 0)
            return next;
        if (end - next < n + 2)
            return NULL;
        return next + n + 2;
    case '+':
    case ':':
    case ',':
    case '#':
    case '_':
    case '(':
        return next;
    case '*':
    case '~':
    case '>':
    case '%':
        n = strtoll(p + 1, NULL, 10);
        if (type == '%')
            n *= 2;
        for (long long i = 0; i < n && next != NULL; i++)
            next = skip_reply(next, end, depth + 1, err, bad);
        return next;
    default:
        *bad = true;
        return NULL;
    }
}

static void report_error(const char *what, const char *detail, size_t len)
{
    if (!atomic_exchange(&error_printed, true))
        fprintf(stderr, "loadgen: %s: %.*s\n", what, (int)len, detail);
}

static void record(struct worker *w, uint64_t latency_ns)
{
    uint64_t us = latency_ns / 1000;
    if (us > w->max_us)
        w->max_us = us;
    w->hist[us < HIST_MAX_US ? us : HIST_MAX_US]++;
    w->ops++;
}

/* Claims and writes the next batch; returns false when there is nothing left to send. */
static bool send_batch(struct conn *c, int epfd)
{
    uint64_t n = cfg.pipeline, first;
    if (cfg.requests > 0) {
        first = atomic_fetch_add(&next_op, n);
        if (first >= cfg.requests)
            return false;
        if (n > cfg.requests - first)
            n = cfg.requests - first;
    } else {
        if (now_ns() >= deadline_ns)
            return false;
        first = atomic_fetch_add(&next_op, n);
    }
    format_batch(c, first, n);
    c->batch_ops = n;
    c->replies_left = n * (uint64_t)cfg.ncommands;
    c->replies_in_op = 0;
    c->batch_sent_ns = now_ns();
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            c->want_out = true;
            break;
        } else {
            report_error("write", strerror(errno), strlen(strerror(errno)));
            return false;
        }
    }
    return true;
}

/* Reads what arrived; returns -1 on failure, 0 while the connection is busy, 1 when done. */
static int on_readable(struct worker *w, struct conn *c, int epfd)
{
    for (;;) {
        if (c->in_cap - c->in_len < READ_BUF_BYTES / 4) {
            size_t cap = c->in_cap * 2;
            if (cap > READ_BUF_MAX_BYTES) {
                report_error("reply", "larger than the read buffer limit", 33);
                return -1;
            }
            char *in = realloc(c->in, cap);
            if (in == NULL)
                return -1;
            c->in = in;
            c->in_cap = cap;
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r == 0) {
            report_error("read", "the server closed the connection", 32);
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            report_error("read", strerror(errno), strlen(strerror(errno)));
            return -1;
        }
        c->in_len += (size_t)r;
        uint64_t t = now_ns();
        const char *p = c->in, *end = c->in + c->in_len;
        while (p < end) {
            bool err = false, bad = false;
            const char *next = skip_reply(p, end, 0, &err, &bad);
            if (bad) {
                report_error("protocol error in a reply", p,
                             (size_t)(end - p) > 80 ? 80 : (size_t)(end - p));
                return -1;
            }
            if (next == NULL)
                break;
            if (err) {
                w->errors++;
                report_error("error reply", p, (size_t)(next - p) - 2);
            }
            p = next;
            if (c->replies_left == 0) {
                report_error("reply", "more replies than requests", 26);
                return -1;
            }
            c->replies_left--;
            if (++c->replies_in_op == (uint64_t)cfg.ncommands) {
                c->replies_in_op = 0;
                record(w, t - c->batch_sent_ns);
            }
            if (c->replies_left == 0) {
                size_t rest = (size_t)(end - p);
                if (rest > 0) {
                    report_error("reply", "more replies than requests", 26);
                    return -1;
                }
                c->in_len = 0;
                if (!send_batch(c, epfd))
                    return error_printed ? -1 : 1;
                p = end = c->in;
                break;
            }
        }
        if (p > c->in) {
            memmove(c->in, p, (size_t)(end - p));
            c->in_len = (size_t)(end - p);
        }
    }
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    int epfd = epoll_create1(0);
    if (epfd < 0) {
        w->failed = 1;
        return NULL;
    }
    int busy = 0;
    for (int i = w->first_conn; i < w->first_conn + w->nconns; i++) {
        struct conn *c = &conns[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            w->failed = 1;
            goto out;
        }
        if (send_batch(c, epfd))
            busy++;
    }
    struct epoll_event events[EPOLL_EVENTS];
    while (busy > 0) {
        int n = epoll_wait(epfd, events, EPOLL_EVENTS, 1000);
        if (n < 0 && errno != EINTR) {
            w->failed = 1;
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if ((events[i].events & EPOLLOUT) && c->want_out) {
                ssize_t r = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (r > 0)
                    c->out_off += (size_t)r;
                else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                    w->failed = 1;
                    goto out;
                }
                if (c->out_off == c->out_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = false;
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int s = on_readable(w, c, epfd);
                if (s < 0) {
                    w->failed = 1;
                    goto out;
                }
                if (s == 1) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                    busy--;
                }
            }
        }
    }
out:
    w->end_ns = now_ns();
    close(epfd);
    return NULL;
}

static int connect_one(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg.port);
    int rc = getaddrinfo(cfg.host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", cfg.host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "loadgen: cannot connect to %s:%d: %s\n", cfg.host, cfg.port,
                strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Splits the command line's words into commands at ";". */
static int parse_commands(int argc, char **argv)
{
    int start = 0;
    for (int i = 0; i <= argc; i++) {
        if (i < argc && strcmp(argv[i], ";") != 0)
            continue;
        int n = i - start;
        if (n == 0 || n > MAX_ARGS || cfg.ncommands == MAX_COMMANDS) {
            fprintf(stderr, "loadgen: each command needs 1 to %d words, at most %d commands\n",
                    MAX_ARGS, MAX_COMMANDS);
            return -1;
        }
        struct command *cmd = &cfg.commands[cfg.ncommands++];
        cmd->argc = n;
        cmd->argv = &argv[start];
        cmd->lens = calloc((size_t)n, sizeof *cmd->lens);
        cmd->tokens = calloc((size_t)n, sizeof *cmd->tokens);
        if (cmd->lens == NULL || cmd->tokens == NULL)
            return -1;
        cfg.op_bytes_max += 16;
        for (int a = 0; a < n; a++) {
            cmd->lens[a] = strlen(argv[start + a]);
            cmd->tokens[a] = count_tokens(argv[start + a]);
            if (cmd->lens[a] + (size_t)cmd->tokens[a] * KEY_DIGITS >= 4096) {
                fprintf(stderr, "loadgen: an argument is limited to 4095 bytes\n");
                return -1;
            }
            cfg.op_bytes_max += 24 + cmd->lens[a] + (size_t)cmd->tokens[a] * KEY_DIGITS;
        }
        start = i + 1;
    }
    return 0;
}

static double percentile_us(const uint64_t *hist, uint64_t total, double q)
{
    uint64_t rank = (uint64_t)(q * (double)total), seen = 0;
    if (rank >= total)
        rank = total - 1;
    for (uint64_t us = 0; us <= HIST_MAX_US; us++) {
        seen += hist[us];
        if (seen > rank)
            return (double)us; /* the bucket [us, us + 1) */
    }
    return HIST_MAX_US;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen [options] COMMAND ARG... [\\; COMMAND ARG...]...\n"
            "  -h HOST        server address (127.0.0.1)\n"
            "  -p PORT        server port (6379)\n"
            "  -c N           connections (50)\n"
            "  -t N           threads, the connections spread over them (1)\n"
            "  -P N           operations per batch in flight on a connection (1)\n"
            "  -n N           operations in all (default: run for -d seconds)\n"
            "  -d SECONDS     run time when -n is not given (5)\n"
            "  -r N           key numbers drawn uniformly from [0, N) (1000000)\n"
            "  --sequential   key number of operation i is --first + i (loading)\n"
            "  --first N      first key number with --sequential (0)\n"
            "  --seed N       random seed (42)\n"
            "In arguments __key__ is the operation's key number and __rand__ a fresh random one,\n"
            "both as ten digits. Output: ops seconds rps p50_us p99_us p999_us max_us errors.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sequential", no_argument, NULL, 'S'},
        {"first", required_argument, NULL, 'F'},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    cfg.duration_s = 5;
    int opt;
    while ((opt = getopt_long(argc, argv, "+h:p:c:t:P:n:d:r:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            cfg.host = optarg;
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 'c':
            cfg.connections = atoi(optarg);
            break;
        case 't':
            cfg.threads = atoi(optarg);
            break;
        case 'P':
            cfg.pipeline = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            cfg.requests = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            cfg.duration_s = atof(optarg);
            break;
        case 'r':
            cfg.keyspace = strtoull(optarg, NULL, 10);
            break;
        case 'S':
            cfg.sequential = true;
            break;
        case 'F':
            cfg.first = strtoull(optarg, NULL, 10);
            break;
        case 's':
            cfg.seed = strtoull(optarg, NULL, 10);
            break;
        case 'H':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || cfg.connections < 1 || cfg.connections > MAX_CONNECTIONS ||
        cfg.threads < 1 || cfg.threads > MAX_THREADS || cfg.pipeline < 1 ||
        cfg.pipeline > MAX_PIPELINE || cfg.keyspace < 1 || cfg.duration_s <= 0 || cfg.port < 1 ||
        cfg.port > 65535) {
        usage(stderr);
        return 2;
    }
    if (cfg.threads > cfg.connections)
        cfg.threads = cfg.connections;
    if (parse_commands(argc - optind, argv + optind) != 0)
        return 2;

    int status = 1;
    struct worker *workers = calloc((size_t)cfg.threads, sizeof *workers);
    conns = calloc((size_t)cfg.connections, sizeof *conns);
    if (workers == NULL || conns == NULL)
        goto out;
    size_t out_cap = cfg.op_bytes_max * cfg.pipeline;
    for (int i = 0; i < cfg.connections; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->rng = (cfg.seed + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull;
        if (c->rng == 0)
            c->rng = 1;
        c->out = malloc(out_cap);
        c->in_cap = READ_BUF_BYTES;
        c->in = malloc(c->in_cap);
        if (c->out == NULL || c->in == NULL)
            goto out;
        c->fd = connect_one();
        if (c->fd < 0)
            goto out;
    }
    start_ns = now_ns();
    deadline_ns = start_ns + (uint64_t)(cfg.duration_s * 1e9);
    int per = cfg.connections / cfg.threads, extra = cfg.connections % cfg.threads, next = 0;
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        w->first_conn = next;
        w->nconns = per + (t < extra ? 1 : 0);
        next += w->nconns;
        w->hist = calloc(HIST_MAX_US + 1, sizeof *w->hist);
        if (w->hist == NULL || pthread_create(&w->thread, NULL, worker_run, w) != 0) {
            fprintf(stderr, "loadgen: cannot start a thread\n");
            exit(1);
        }
    }
    uint64_t ops = 0, errors = 0, max_us = 0, end_ns = start_ns;
    int failed = 0;
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        pthread_join(w->thread, NULL);
        ops += w->ops;
        errors += w->errors;
        failed |= w->failed;
        if (w->max_us > max_us)
            max_us = w->max_us;
        if (w->end_ns > end_ns)
            end_ns = w->end_ns;
        if (t > 0)
            for (uint64_t us = 0; us <= HIST_MAX_US; us++)
                workers[0].hist[us] += w->hist[us];
    }
    double secs = (double)(end_ns - start_ns) / 1e9;
    printf("# ops seconds rps p50_us p99_us p999_us max_us errors\n");
    if (ops > 0)
        printf("%llu %.3f %.0f %.0f %.0f %.0f %llu %llu\n", (unsigned long long)ops, secs,
               secs > 0 ? (double)ops / secs : 0.0, percentile_us(workers[0].hist, ops, 0.50),
               percentile_us(workers[0].hist, ops, 0.99),
               percentile_us(workers[0].hist, ops, 0.999), (unsigned long long)max_us,
               (unsigned long long)errors);
    else
        printf("0 %.3f 0 0 0 0 0 %llu\n", secs, (unsigned long long)errors);
    status = (failed || errors > 0 || ops == 0) ? 1 : 0;
out:
    if (conns != NULL)
        for (int i = 0; i < cfg.connections; i++) {
            if (conns[i].fd >= 0)
                close(conns[i].fd);
            free(conns[i].out);
            free(conns[i].in);
        }
    if (workers != NULL)
        for (int t = 0; t < cfg.threads; t++)
            free(workers[t].hist);
    free(workers);
    free(conns);
    return status;
}
