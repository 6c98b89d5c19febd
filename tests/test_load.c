/*
 * test_load.c - tallyd at its limits, over loopback: many connections, a slow reader, a
 * million-key MSET and 16 MiB values.
 *
 * Checks, with exact values (timings are printed, never asserted):
 * - 10,000 connections held open at once (RLIMIT_NOFILE is raised as far as the hard limit
 *   allows; with a lower limit, as many as it allows, and the test says so): each sends PING
 *   and INCR of a shared key, all before any reply is read; the INCR replies are exactly
 *   1..N, every connection answers a second PING, INFO counts N clients, and after they all
 *   close INFO counts them gone. tallyd runs with --maxclients 10100.
 * - Readers that never read their replies (GET of a 512 KiB value, again and again), one after
 *   another (20, or more until the other clients have 1,000 samples each), against a server
 *   with --client-output-buffer-limit 1mb: each is disconnected, INFO stats counts exactly
 *   them, and meanwhile two other clients get every reply right (INCRs counted exactly);
 *   their latency before and during the slow readers is printed.
 * - MSET of 1,000,000 keys in one command (2,000,001 arguments, within the default
 *   max-multibulk-len), then MGET of them all, every value checked, and DBSIZE.
 * - A 16 MiB value (random bytes): SET, GET back byte for byte, STRLEN; a value of 16 MiB + 1
 *   and an APPEND that would pass 16 MiB are refused with "ERR string exceeds maximum allowed
 *   size", and the connection and the stored value are unchanged.
 *
 * Environment: TALLYD (else server/tallyd, ../server/tallyd); TALLY_LOAD_CONNS lowers the
 * connection count (for a quick run).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "tally.h"
#include "testutil.h"

#define TEST_ALARM_S        600
#define MANY_CONNS          10000
#define MAXCLIENTS          "10100"
#define NOFILE_MARGIN       256  /* the test's own files besides the connections */
#define SERVER_RESERVED_FDS 1024 /* TL_MAIN_RESERVED_FDS in server/main.c */
#define GONE_WAIT_MS        10000
#define OUTPUT_LIMIT        "1mb"
#define SLOW_VALUE_BYTES    (512 * 1024)
#define SLOW_GETS           2000
/* Slow readers run one after another while the other clients are timed: at least
 * SLOW_READERS, and more (up to SLOW_READERS_MAX) until each other client has
 * LATENCY_DURING_MIN samples taken meanwhile. */
#define SLOW_READERS       20
#define SLOW_READERS_MAX   1000
#define LATENCY_DURING_MIN 1000
#define SLOW_MAX_MS        30000
#define SLOW_RCVBUF        (64 * 1024)
#define OTHER_CLIENTS      2
#define LATENCY_SAMPLES    4000 /* per client and phase */
#define MSET_KEYS          1000000
#define BIG_VALUE_BYTES    (16 << 20)
#define CMD_TIMEOUT_MS     120000

static int n_passed, n_failed;
static const char *g_case = "";

/* Counts a check; a failed one prints its line, the case and the message. */
static void __attribute__((format(printf, 3, 4))) check_at(bool ok, int line, const char *fmt, ...)
{
    if (ok) {
        n_passed++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n_failed++;
    printf("FAIL line %d (%s): %s\n", line, g_case, msg);
    fflush(stdout);
}
#define CHECK_TRUE(cond, ...) check_at((cond), __LINE__, __VA_ARGS__)
#define FAIL(...)             check_at(false, __LINE__, __VA_ARGS__)

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static tally_ctx *connect_to(int port)
{
    struct tally_options o = {.host = "127.0.0.1",
                              .port = port,
                              .connect_timeout_ms = 10000,
                              .command_timeout_ms = CMD_TIMEOUT_MS};
    tally_ctx *ctx = tally_connect_with(&o);
    if (!ctx || tally_errcode(ctx) != 0) {
        fprintf(stderr, "connect to port %d: %s\n", port, ctx ? tally_errstr(ctx) : "no memory");
        exit(1);
    }
    return ctx;
}

/* A number after field in an INFO section, or -1. */
static long long info_number(tally_ctx *ctx, const char *section, const char *field)
{
    tally_reply *r = tally_command(ctx, "INFO %s", section);
    long long v = -1;
    if (r && r->type == TALLY_REPLY_STRING) {
        const char *p = strstr(r->str, field);
        if (p)
            v = atoll(p + strlen(field));
    }
    tally_reply_free(r);
    return v;
}

/* Whether the reply is an error whose text starts with prefix. */
static bool is_error(const tally_reply *r, const char *prefix)
{
    return r && r->type == TALLY_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static bool is_status(const tally_reply *r, const char *text)
{
    return r && r->type == TALLY_REPLY_STATUS && strcmp(r->str, text) == 0;
}

/* ---- 10,000 connections ---------------------------------------------------------------------- */

/* Raises the open-files limit for want connections, as far as the hard limit allows, and
 * returns how many connections fit. tallyd (started after this, inheriting the limit) raises
 * its own up to the hard limit and lowers maxclients to leave SERVER_RESERVED_FDS for itself,
 * so the connections must fit there too. */
static int room_for_connections(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    long room = rl.rlim_max == RLIM_INFINITY
                    ? want
                    : (long)rl.rlim_max - SERVER_RESERVED_FDS - NOFILE_MARGIN;
    int conns = room < want ? (int)(room > 0 ? room : 0) : want;
    rlim_t need = (rlim_t)conns + NOFILE_MARGIN;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return 0;
    }
    return conns;
}

/* Reads from fd until buf holds n CRLF-ended lines (replies here are one line each); returns
 * the bytes read or -1 on a close, an error or a timeout (conn_open's). */
static long read_lines(int fd, char *buf, size_t cap, int n)
{
    size_t len = 0;
    int lines = 0;
    while (lines < n) {
        if (len + 1 >= cap)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        for (ssize_t i = 0; i < r; i++)
            lines += buf[len + (size_t)i] == '\n';
        len += (size_t)r;
    }
    buf[len] = 0;
    return (long)len;
}

static void test_many_connections(int port, int conns)
{
    g_case = "connections held open at once";
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    double t0 = mono_s();
    int opened = 0;
    for (; opened < conns; opened++)
        if (conn_open(&cs[opened], port) < 0)
            break;
    double t_open = mono_s() - t0;
    CHECK_TRUE(opened == conns, "only %d of %d connections opened: %s", opened, conns,
               strerror(errno));

    /* Every connection asks before any reply is read: all are open and waiting at once. */
    static const char req[] = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$5\r\nconns\r\n";
    t0 = mono_s();
    int send_errors = 0;
    for (int i = 0; i < opened; i++)
        send_errors += conn_send(&cs[i], req, sizeof req - 1) < 0;
    CHECK_TRUE(send_errors == 0, "%d connections could not send", send_errors);
    char *seen = calloc((size_t)opened + 1, 1);
    int bad = 0;
    for (int i = 0; i < opened; i++) {
        char buf[64];
        long n = read_lines(cs[i].fd, buf, sizeof buf, 2);
        long v = -1;
        if (n > 0 && strncmp(buf, "+PONG\r\n:", 8) == 0)
            v = atol(buf + 8);
        if (v >= 1 && v <= opened && !seen[v])
            seen[v] = 1;
        else if (bad++ < 5)
            FAIL("connection %d answered %s", i, n > 0 ? buf : "nothing (closed?)");
    }
    double t_first = mono_s() - t0;
    CHECK_TRUE(bad == 0, "%d of %d connections answered PING and INCR wrongly", bad, opened);
    free(seen);

    /* Still all served: a second round. */
    t0 = mono_s();
    bad = 0;
    for (int i = 0; i < opened; i++)
        bad += conn_send(&cs[i], "*1\r\n$4\r\nPING\r\n", 14) < 0;
    for (int i = 0; i < opened; i++) {
        char buf[64];
        long n = read_lines(cs[i].fd, buf, sizeof buf, 1);
        bad += n != 7 || strcmp(buf, "+PONG\r\n") != 0;
    }
    double t_second = mono_s() - t0;
    CHECK_TRUE(bad == 0, "%d of %d connections did not answer a second PING", bad, opened);

    tally_ctx *ctx = connect_to(port);
    long long clients = info_number(ctx, "clients", "connected_clients:");
    CHECK_TRUE(clients == opened + 1, "INFO clients: connected_clients is %lld, expected %d",
               clients, opened + 1);
    tally_reply *r = tally_command(ctx, "GET conns");
    long long total = r && r->type == TALLY_REPLY_STRING ? atoll(r->str) : -1;
    CHECK_TRUE(total == opened, "GET conns is %lld after %d INCRs", total, opened);
    tally_reply_free(r);

    for (int i = 0; i < opened; i++)
        conn_close(&cs[i]);
    free(cs);
    t0 = mono_s();
    while ((clients = info_number(ctx, "clients", "connected_clients:")) > 1 &&
           mono_s() - t0 < GONE_WAIT_MS / 1000.0)
        usleep(10000);
    CHECK_TRUE(clients == 1, "INFO clients: %lld connected after the others closed", clients);
    tally_free(ctx);
    printf("connections: %d of %d held open at once (opened in %.2f s); PING+INCR on all in "
           "%.3f s, INCRs exactly 1..%d; a second PING on all in %.3f s\n",
           opened, MANY_CONNS, t_open, t_first, opened, t_second);
}

/* ---- a slow reader --------------------------------------------------------------------------- */

struct other_client {
    int port;
    int index;
    atomic_int *phase; /* 0: baseline, 1: while the slow reader floods, 2: stop */
    double lat_ms[2][LATENCY_SAMPLES];
    atomic_int samples[2]; /* read by the main thread while the client runs */
    long incrs, errors;
    char why[256];
};

/* INCRs its own key and times each until told to stop; every reply must be the next count. */
static void *other_main(void *arg)
{
    struct other_client *o = arg;
    tally_ctx *ctx = connect_to(o->port);
    char key[32];
    snprintf(key, sizeof key, "other:%d", o->index);
    int phase;
    while ((phase = atomic_load(o->phase)) < 2) {
        double t0 = mono_s();
        tally_reply *r = tally_command(ctx, "INCR %s", key);
        double ms = (mono_s() - t0) * 1e3;
        if (!r || r->type != TALLY_REPLY_INTEGER || r->integer != o->incrs + 1) {
            if (o->errors++ == 0)
                snprintf(o->why, sizeof o->why, "INCR %s answered %s (expected %ld)", key,
                         r ? (r->str ? r->str : tally_reply_type_name(r->type)) : tally_errstr(ctx),
                         o->incrs + 1);
            tally_reply_free(r);
            break;
        }
        tally_reply_free(r);
        o->incrs++;
        if (o->samples[phase] < LATENCY_SAMPLES)
            o->lat_ms[phase][o->samples[phase]++] = ms;
        else if (phase == 0)
            usleep(100); /* the baseline is full: wait for the slow reader */
    }
    tally_free(ctx);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p50, p99 and max of the samples of one phase across the clients. */
static void latency_summary(struct other_client *os, int phase, char *out, size_t cap)
{
    double *all = malloc(sizeof(double) * OTHER_CLIENTS * LATENCY_SAMPLES);
    size_t n = 0;
    for (int i = 0; i < OTHER_CLIENTS; i++)
        for (int j = 0; j < os[i].samples[phase]; j++)
            all[n++] = os[i].lat_ms[phase][j];
    qsort(all, n, sizeof *all, cmp_double);
    if (n == 0)
        snprintf(out, cap, "no samples");
    else
        snprintf(out, cap, "p50 %.3f ms, p99 %.3f ms, max %.3f ms over %zu INCRs", all[n / 2],
                 all[n * 99 / 100], all[n - 1], n);
    free(all);
}

/* Sends GETs of a large value without reading, until the server closes the connection or
 * SLOW_GETS were sent; then reads what is left. Returns whether the server closed it, with the
 * reply bytes read (*got) out of those asked for (*asked). */
static bool flood_without_reading(int port, size_t *got, size_t *asked)
{
    static const char get[] = "*2\r\n$3\r\nGET\r\n$4\r\nslow\r\n";
    struct conn c;
    if (conn_open(&c, port) < 0)
        return false;
    int rcvbuf = SLOW_RCVBUF; /* small, so that the replies pile up in the server */
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    int sent = 0;
    size_t part = 0; /* bytes of the current request already sent */
    bool closed = false;
    double start = mono_s();
    while (sent < SLOW_GETS && !closed && mono_s() - start < SLOW_MAX_MS / 1000.0) {
        ssize_t w = send(c.fd, get + part, sizeof get - 1 - part, MSG_NOSIGNAL);
        if (w > 0) {
            part += (size_t)w;
            if (part == sizeof get - 1) {
                part = 0;
                sent++;
            }
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = c.fd, .events = POLLOUT};
            poll(&p, 1, 20);
        } else {
            closed = true; /* EPIPE or ECONNRESET: the server closed it */
        }
    }
    *asked = (size_t)sent * (SLOW_VALUE_BYTES + 16);
    /* Now read what is left, blocking (each recv bounded by conn_open's receive timeout): the
     * close comes long before all the replies would. */
    char *buf = malloc(1 << 20);
    *got = 0;
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) & ~O_NONBLOCK);
    ssize_t r = 1;
    while (!closed && *got < *asked && (r = recv(c.fd, buf, 1 << 20, 0)) > 0)
        *got += (size_t)r;
    closed = closed || r == 0 || (r < 0 && errno != EAGAIN);
    free(buf);
    conn_close(&c);
    return closed;
}

static void test_slow_reader(int port)
{
    g_case = "a slow reader at the output limit";
    tally_ctx *ctx = connect_to(port);
    char *val = malloc(SLOW_VALUE_BYTES);
    memset(val, 's', SLOW_VALUE_BYTES);
    tally_reply *r = tally_command(ctx, "SET slow %b", val, (size_t)SLOW_VALUE_BYTES);
    CHECK_TRUE(is_status(r, "OK"), "SET slow (512 KiB) failed");
    tally_reply_free(r);
    free(val);
    long long before = info_number(ctx, "stats", "client_output_buffer_limit_disconnections:");

    atomic_int phase = 0;
    struct other_client *os = calloc(OTHER_CLIENTS, sizeof *os);
    pthread_t th[OTHER_CLIENTS];
    for (int i = 0; i < OTHER_CLIENTS; i++) {
        os[i] = (struct other_client){.port = port, .index = i, .phase = &phase};
        pthread_create(&th[i], NULL, other_main, &os[i]);
    }
    /* The baseline: until each other client has its samples (or gave up on an error). */
    for (bool full = false; !full;) {
        usleep(10000);
        full = true;
        for (int i = 0; i < OTHER_CLIENTS; i++)
            full = full && (os[i].samples[0] == LATENCY_SAMPLES || os[i].errors);
    }
    atomic_store(&phase, 1);
    size_t got = 0, asked = 0, most_got = 0;
    int closed = 0;
    double t0 = mono_s();
    int readers = 0;
    for (int i = 0; i < SLOW_READERS_MAX; i++) {
        bool enough = i >= SLOW_READERS;
        for (int j = 0; j < OTHER_CLIENTS; j++)
            enough = enough && (os[j].samples[1] >= LATENCY_DURING_MIN || os[j].errors);
        if (enough)
            break;
        readers++;
        bool c = flood_without_reading(port, &got, &asked);
        closed += c && got < asked / 4;
        if (!(c && got < asked / 4))
            FAIL("slow reader %d: expected a disconnect at the %s output limit: %s after "
                 "reading %zu of %zu bytes",
                 i, OUTPUT_LIMIT, c ? "closed" : "not closed", got, asked);
        most_got = got > most_got ? got : most_got;
    }
    double t_flood = mono_s() - t0;
    atomic_store(&phase, 2);
    long incrs = 0, errors = 0;
    for (int i = 0; i < OTHER_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        incrs += os[i].incrs;
        errors += os[i].errors;
        if (os[i].errors)
            FAIL("another client: %s", os[i].why);
    }
    CHECK_TRUE(closed == readers, "%d of %d slow readers disconnected", closed, readers);
    CHECK_TRUE(errors == 0, "%ld other clients failed", errors);
    long long after = info_number(ctx, "stats", "client_output_buffer_limit_disconnections:");
    CHECK_TRUE(after == before + readers,
               "INFO stats: client_output_buffer_limit_disconnections went from %lld to %lld, "
               "expected %d more",
               before, after, readers);
    for (int i = 0; i < OTHER_CLIENTS; i++) {
        char key[32];
        snprintf(key, sizeof key, "other:%d", i);
        r = tally_command(ctx, "GET %s", key);
        long long v = r && r->type == TALLY_REPLY_STRING ? atoll(r->str) : -1;
        CHECK_TRUE(v == os[i].incrs, "GET %s is %lld after %ld acknowledged INCRs", key, v,
                   os[i].incrs);
        tally_reply_free(r);
    }
    tally_free(ctx);
    char base[160], during[160];
    latency_summary(os, 0, base, sizeof base);
    latency_summary(os, 1, during, sizeof during);
    printf("slow readers: %d of %d disconnected at the %s output limit in %.2f s (the last had "
           "asked for %zu reply bytes; none read more than %zu); %d other clients, %ld INCRs all "
           "right: before %s; during %s\n",
           closed, readers, OUTPUT_LIMIT, t_flood, asked, most_got, OTHER_CLIENTS, incrs, base,
           during);
    free(os);
}

/* ---- a million-key MSET ---------------------------------------------------------------------- */

static void test_mset_million(int port)
{
    g_case = "MSET of 1,000,000 keys";
    size_t argc = 1 + 2 * (size_t)MSET_KEYS;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    char *text = malloc((size_t)MSET_KEYS * 32);
    argv[0] = "MSET";
    lens[0] = 4;
    for (size_t i = 0; i < MSET_KEYS; i++) {
        char *k = text + i * 32, *v = k + 16;
        lens[1 + 2 * i] = (size_t)snprintf(k, 16, "m:%07zu", i);
        lens[2 + 2 * i] = (size_t)snprintf(v, 16, "v%zu", i * 7919 % 1000003);
        argv[1 + 2 * i] = k;
        argv[2 + 2 * i] = v;
    }
    tally_ctx *ctx = connect_to(port);
    double t0 = mono_s();
    tally_reply *r = tally_command_argv(ctx, (int)argc, argv, lens);
    double t_mset = mono_s() - t0;
    CHECK_TRUE(is_status(r, "OK"), "MSET of %d keys answered %s %s", MSET_KEYS,
               r ? tally_reply_type_name(r->type) : tally_errstr(ctx), r && r->str ? r->str : "");
    tally_reply_free(r);

    /* MGET of the same keys: the values' slots become the keys'. */
    argv[0] = "MGET";
    for (size_t i = 0; i < MSET_KEYS; i++) {
        argv[1 + i] = argv[1 + 2 * i];
        lens[1 + i] = lens[1 + 2 * i];
    }
    t0 = mono_s();
    r = tally_command_argv(ctx, 1 + MSET_KEYS, argv, lens);
    double t_mget = mono_s() - t0;
    long wrong = 0;
    if (r && r->type == TALLY_REPLY_ARRAY && r->elements == MSET_KEYS) {
        for (size_t i = 0; i < MSET_KEYS; i++) {
            const char *want = text + i * 32 + 16;
            const tally_reply *e = r->element[i];
            if (e->type != TALLY_REPLY_STRING || e->len != strlen(want) ||
                memcmp(e->str, want, e->len) != 0) {
                if (wrong++ < 3)
                    FAIL("MGET element %zu: %s, expected %s", i,
                         e->str ? e->str : tally_reply_type_name(e->type), want);
            }
        }
    } else {
        wrong = -1;
    }
    CHECK_TRUE(wrong == 0, "MGET of %d keys: %ld wrong values (-1: not an array of them: %s)",
               MSET_KEYS, wrong, r ? tally_reply_type_name(r->type) : tally_errstr(ctx));
    tally_reply_free(r);
    r = tally_command(ctx, "DBSIZE");
    CHECK_TRUE(r && r->type == TALLY_REPLY_INTEGER && r->integer >= MSET_KEYS,
               "DBSIZE is %lld after MSET of %d keys", r ? r->integer : -1, MSET_KEYS);
    tally_reply_free(r);
    tally_free(ctx);
    printf("MSET of %d keys (%zu arguments) in one command: %.2f s; MGET of them all back, every "
           "value checked: %.2f s\n",
           MSET_KEYS, argc, t_mset, t_mget);
    free(text);
    free(lens);
    free(argv);
}

/* ---- 16 MiB values --------------------------------------------------------------------------- */

static void test_big_value(int port)
{
    g_case = "a 16 MiB value";
    uint64_t rng = 16;
    char *val = malloc(BIG_VALUE_BYTES + 1);
    for (size_t i = 0; i < BIG_VALUE_BYTES + 1; i += 8) {
        uint64_t x = test_rand(&rng);
        memcpy(val + i, &x, i + 8 <= BIG_VALUE_BYTES + 1 ? 8 : BIG_VALUE_BYTES + 1 - i);
    }
    tally_ctx *ctx = connect_to(port);
    double t0 = mono_s();
    tally_reply *r = tally_command(ctx, "SET big %b", val, (size_t)BIG_VALUE_BYTES);
    double t_set = mono_s() - t0;
    CHECK_TRUE(is_status(r, "OK"), "SET of 16 MiB answered %s",
               r ? (r->str ? r->str : tally_reply_type_name(r->type)) : tally_errstr(ctx));
    tally_reply_free(r);
    t0 = mono_s();
    r = tally_command(ctx, "GET big");
    double t_get = mono_s() - t0;
    CHECK_TRUE(r && r->type == TALLY_REPLY_STRING && r->len == BIG_VALUE_BYTES &&
                   memcmp(r->str, val, BIG_VALUE_BYTES) == 0,
               "GET of the 16 MiB value gave %zu bytes, %s", r ? r->len : 0,
               r && r->len == BIG_VALUE_BYTES ? "not the same" : "not its length");
    tally_reply_free(r);
    r = tally_command(ctx, "STRLEN big");
    CHECK_TRUE(r && r->type == TALLY_REPLY_INTEGER && r->integer == BIG_VALUE_BYTES,
               "STRLEN big is %lld", r ? r->integer : -1);
    tally_reply_free(r);

    static const char too_big[] = "ERR string exceeds maximum allowed size";
    r = tally_command(ctx, "SET big2 %b", val, (size_t)BIG_VALUE_BYTES + 1);
    CHECK_TRUE(is_error(r, too_big), "SET of 16 MiB + 1 answered %s",
               r ? (r->str ? r->str : tally_reply_type_name(r->type)) : tally_errstr(ctx));
    tally_reply_free(r);
    r = tally_command(ctx, "APPEND big x");
    CHECK_TRUE(is_error(r, too_big), "APPEND past 16 MiB answered %s",
               r ? (r->str ? r->str : tally_reply_type_name(r->type)) : tally_errstr(ctx));
    tally_reply_free(r);
    r = tally_command(ctx, "EXISTS big2");
    CHECK_TRUE(r && r->type == TALLY_REPLY_INTEGER && r->integer == 0,
               "the refused SET left big2 (EXISTS %lld)", r ? r->integer : -1);
    tally_reply_free(r);
    r = tally_command(ctx, "STRLEN big");
    CHECK_TRUE(r && r->type == TALLY_REPLY_INTEGER && r->integer == BIG_VALUE_BYTES,
               "STRLEN big is %lld after the refused APPEND", r ? r->integer : -1);
    tally_reply_free(r);
    tally_free(ctx);
    free(val);
    printf("16 MiB value: SET %.3f s, GET back byte for byte %.3f s, STRLEN right; 16 MiB + 1 "
           "and an APPEND past 16 MiB refused (%s)\n",
           t_set, t_get, too_big);
}

int main(void)
{
    test_require_uring();
    srv_setup(TEST_ALARM_S);
    int want = MANY_CONNS;
    const char *e = getenv("TALLY_LOAD_CONNS");
    if (e && atoi(e) > 0 && atoi(e) < want)
        want = atoi(e);
    /* Before the servers start, so that they inherit the raised limit too. */
    int conns = room_for_connections(want);
    char *tmp = test_tmpdir("load");

    struct test_server big;
    srv_init(&big, tmp, "main");
    srv_add_opt(&big, "maxclients", MAXCLIENTS);
    srv_start(&big);
    printf("testing %s on port %d\n", srv_binary(), big.port);
    fflush(stdout);
    if (want < MANY_CONNS)
        printf("TALLY_LOAD_CONNS asks for %d connections, not %d\n", want, MANY_CONNS);
    if (conns < want)
        printf("RLIMIT_NOFILE's hard limit leaves room for %d connections, not %d: testing %d\n",
               conns, want, conns);
    if (conns > 0)
        test_many_connections(big.port, conns);
    else
        printf("skipped: connections held open (no room under RLIMIT_NOFILE)\n");
    test_mset_million(big.port);
    test_big_value(big.port);
    srv_stop_with(&big, SIGTERM);

    struct test_server lim;
    srv_init(&lim, tmp, "limited");
    srv_add_opt(&lim, "client-output-buffer-limit", OUTPUT_LIMIT);
    srv_start(&lim);
    test_slow_reader(lim.port);
    srv_stop_with(&lim, SIGTERM);

    printf("%d passed, %d failed\n", n_passed, n_failed);
    bool keep = n_failed > 0 || getenv("TALLY_KEEP_TMP") != NULL;
    if (keep)
        printf("the servers' directories and logs are kept in %s\n", tmp);
    else
        test_rmdir(tmp);
    free(tmp);
    return n_failed ? 1 : 0;
}
