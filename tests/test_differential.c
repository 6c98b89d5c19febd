/*
 * test_differential.c - random command sequences sent to tallyd and to redis-server side by
 * side; every reply must be the same, byte for byte, in RESP2 and in RESP3.
 *
 * Where test_compat replays Redis's recorded replies to chosen cases, this test makes up its own:
 * a seeded generator picks commands that both servers offer (strings and counters, expiry,
 * HyperLogLog, keys, MULTI/EXEC with WATCH, SELECT, SCAN) over a few keys, with arguments chosen to
 * meet the edges (integer limits, float texts such as "inf", "1e3" or " 1", option clashes, missing
 * arguments), so that the keys pass through every type and state. The first difference fails the
 * test with its seed, its step and the commands that led to it.
 *
 * What may differ is left out or compared loosely, and why:
 * - a TTL or expiry time is compared by its sign (the servers set it a millisecond apart);
 *   expiries are 0, in the past or at least 100 s away, so no key expires between two steps;
 * - the keys of KEYS and SCAN are compared as sets (neither server promises an order), and
 *   neither is sent inside MULTI (the order would be inside EXEC's reply);
 * - DBSIZE is not sent: Redis counts keys that have expired but not yet been reclaimed;
 * - an HLL is never APPENDed to (HLLs are made in h1 and h2, APPEND writes k1 to k3): Redis
 *   checks a corrupted HLL lazily, Tally at once, and the answers to a corrupted one differ by
 *   design (both refuse to count it);
 * - SCAN is not given a cursor it did not hand out but "0" (Redis then visits whatever bucket
 *   the number masks to), nor TYPE none (Redis then answers expired keys);
 * - CONFIG, INFO, CLIENT ID and the like describe the server itself.
 *
 * Needs redis-server on PATH (Debian's redis-server package); without it the test is skipped
 * (exit 77). TALLY_DIFF_SEED picks the seed (default: a fixed one, so that `make check` runs the
 * same sequence every time; "clock" takes one from the clock, printed), TALLY_DIFF_STEPS
 * the steps per protocol (default 3000); TALLY_DIFF_TRACE prints every step.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

#define TEST_ALARM_S  300
#define DEFAULT_STEPS 3000
#define DEFAULT_SEED  20261123
#define MAX_ARGS      320
#define ARG_BYTES     8192
#define HISTORY       12
#define SHOW_BYTES    400

static const char *const KEYS[] = {"k1", "k2", "k3"};
static const char *const HLLS[] = {"h1", "h2"};
static const char *const VALUES[] = {
    "0",
    "1",
    "-1",
    "10",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "1.5",
    "-0",
    "+1",
    " 1",
    "1 ",
    "0x10",
    "1e3",
    "3.0",
    "0.1",
    "abc",
    "",
    "inf",
    "-inf",
    "nan",
    "007",
    "1.0e10",
    "17.5000",
    "5e-1",
    "1111111111111111111111111",
    "-1.5e-3",
    ".5",
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng;

static unsigned pick(unsigned n)
{
    return (unsigned)(test_rand(&rng) % n);
}

static const char *one_of(const char *const *list, size_t n)
{
    return list[pick((unsigned)n)];
}

/* One command being built: argv points into text. */
struct cmd {
    int argc;
    char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char text[ARG_BYTES];
    size_t used;
};

static void add(struct cmd *c, const char *fmt, ...)
{
    if (c->argc == MAX_ARGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->text + c->used, sizeof c->text - c->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof c->text - c->used)
        return;
    c->argv[c->argc] = c->text + c->used;
    c->lens[c->argc++] = (size_t)n;
    c->used += (size_t)n + 1;
}

static const char *key(void)
{
    return pick(5) == 0 ? one_of(HLLS, N(HLLS)) : one_of(KEYS, N(KEYS));
}

static const char *value(void)
{
    return one_of(VALUES, N(VALUES));
}

/* Adds up to max of the options in opts (an entry may be an option and its argument, "EX 100"),
 * each at most once, in random order. */
static void add_options(struct cmd *c, const char *const *opts, size_t n, unsigned max)
{
    bool used[16] = {false};
    unsigned k = pick(max + 1);
    for (unsigned i = 0; i < k; i++) {
        unsigned j = pick((unsigned)n);
        if (used[j])
            continue;
        used[j] = true;
        char word[64];
        snprintf(word, sizeof word, "%s", opts[j]);
        char *save = NULL;
        for (char *w = strtok_r(word, " ", &save); w; w = strtok_r(NULL, " ", &save))
            add(c, "%s", w);
    }
}

/* Whether the session is inside MULTI (as the generator sees it: both servers agree on it as
 * long as their replies agree). */
static bool in_multi;

static void generate(struct cmd *c)
{
    memset(c, 0, offsetof(struct cmd, text));
    c->used = 0;
    const char *k = key();
    switch (pick(46)) {
    case 0:
        add(c, "GET");
        add(c, "%s", k);
        break;
    case 1: {
        static const char *const o[] = {
            "NX", "XX", "GET", "KEEPTTL", "EX 100", "PX 100000", "EXAT 4102444800", "EX x"};
        add(c, "SET");
        add(c, "%s", k);
        add(c, "%s", value());
        add_options(c, o, N(o), 3);
        break;
    }
    case 2:
        add(c, "SETNX");
        add(c, "%s", k);
        add(c, "%s", value());
        break;
    case 3: {
        static const char *const t[] = {"100", "0", "-1", "a", "9223372036854775807"};
        add(c, "SETEX");
        add(c, "%s", k);
        add(c, "%s", one_of(t, N(t)));
        add(c, "%s", value());
        break;
    }
    case 4: {
        static const char *const t[] = {"100000", "0", "-1"};
        add(c, "PSETEX");
        add(c, "%s", k);
        add(c, "%s", one_of(t, N(t)));
        add(c, "%s", value());
        break;
    }
    case 5:
        add(c, "GETSET");
        add(c, "%s", k);
        add(c, "%s", value());
        break;
    case 6:
        add(c, "GETDEL");
        add(c, "%s", k);
        break;
    case 7: {
        static const char *const o[] = {"PERSIST", "EX 100", "PX 0", "EXAT 1", "FOO"};
        add(c, "GETEX");
        add(c, "%s", k);
        add_options(c, o, N(o), 2);
        break;
    }
    case 8:
        add(c, "MGET");
        for (unsigned i = 0, n = 1 + pick(3); i < n; i++)
            add(c, "%s", key());
        break;
    case 9:
    case 10:
        add(c, pick(2) ? "MSET" : "MSETNX");
        for (unsigned i = 0, n = 1 + pick(2); i < n; i++) {
            add(c, "%s", key());
            add(c, "%s", value());
        }
        if (pick(10) == 0)
            add(c, "odd");
        break;
    case 11:
        add(c, "INCR");
        add(c, "%s", k);
        break;
    case 12:
        add(c, "DECR");
        add(c, "%s", k);
        break;
    case 13:
        add(c, "INCRBY");
        add(c, "%s", k);
        add(c, "%s", value());
        break;
    case 14:
        add(c, "DECRBY");
        add(c, "%s", k);
        add(c, "%s", value());
        break;
    case 15:
        add(c, "INCRBYFLOAT");
        add(c, "%s", k);
        add(c, "%s", value());
        break;
    case 16:
        /* Never into an HLL: see the top of the file. */
        add(c, "APPEND");
        add(c, "%s", one_of(KEYS, N(KEYS)));
        add(c, "%s", pick(4) ? value() : "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        break;
    case 17:
        add(c, "STRLEN");
        add(c, "%s", k);
        break;
    case 18:
        add(c, pick(2) ? "DEL" : "UNLINK");
        for (unsigned i = 0, n = 1 + pick(2); i < n; i++)
            add(c, "%s", key());
        break;
    case 19:
        add(c, "EXISTS");
        for (unsigned i = 0, n = 1 + pick(3); i < n; i++)
            add(c, "%s", key());
        break;
    case 20:
        add(c, "TYPE");
        add(c, "%s", k);
        break;
    case 21: {
        /* No expiry that could pass between two steps: at least 100 s away, or at once; and
         * none 100 s away, the TTL the other commands set, so that GT and LT never compare two
         * times a clock tick apart (PEXPIRE 100000 GT right after GETEX EX 100 did). */
        static const char *const rel[] = {"200000", "0",          "-1",
                                          "x",      "4102444800", "9223372036854775807"};
        static const char *const abs[] = {
            "1", "100", "0", "-1", "x", "4102444800", "4102444800000", "9223372036854775807"};
        static const char *const o[] = {"NX", "XX", "GT", "LT", "FOO"};
        bool at = pick(2);
        add(c, "%s%s", pick(2) ? "P" : "", at ? "EXPIREAT" : "EXPIRE");
        add(c, "%s", k);
        add(c, "%s", at ? one_of(abs, N(abs)) : one_of(rel, N(rel)));
        add_options(c, o, N(o), 2);
        break;
    }
    case 22: {
        static const char *const cmds[] = {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"};
        if (in_multi) {
            generate(c);
            return;
        }
        add(c, "%s", one_of(cmds, N(cmds)));
        add(c, "%s", k);
        break;
    }
    case 23:
        add(c, "PERSIST");
        add(c, "%s", k);
        break;
    case 24:
    case 25:
        add(c, "PFADD");
        add(c, "%s", one_of(HLLS, N(HLLS)));
        for (unsigned i = 0, n = pick(4) == 0 ? 300 : pick(4); i < n; i++)
            add(c, "e%u", pick(100000)); /* 300 make a sparse HLL dense */
        break;
    case 26:
        add(c, "PFCOUNT");
        for (unsigned i = 0, n = 1 + pick(2); i < n; i++)
            add(c, "%s", key());
        break;
    case 27:
        add(c, "PFMERGE");
        add(c, "%s", one_of(HLLS, N(HLLS)));
        for (unsigned i = 0, n = pick(3); i < n; i++)
            add(c, "%s", key());
        break;
    case 28: {
        /* In the future only: Redis counts a SET whose time is past as a write of a missing
         * key for WATCH, where Tally, with nothing to store, writes nothing. */
        add(c, "SET");
        add(c, "%s", k);
        add(c, "%s", value());
        bool ms = pick(2);
        add(c, ms ? "PXAT" : "EXAT");
        add(c, ms ? "4102444800000" : "4102444800");
        if (pick(2))
            add(c, "GET");
        break;
    }
    case 29: {
        static const char *const arity[] = {"INCRBY", "SET",     "GET",    "GETEX", "EXPIRE",
                                            "MSET",   "PFCOUNT", "APPEND", "SETEX", "INCRBYFLOAT"};
        add(c, "%s", one_of(arity, N(arity)));
        if (pick(2))
            add(c, "%s", one_of(KEYS, N(KEYS)));
        break;
    }
    case 30:
        if (in_multi) {
            generate(c);
            return;
        }
        add(c, "KEYS");
        {
            static const char *const p[] = {"*", "k*", "h?", "[a-k]1", "*2"};
            add(c, "%s", one_of(p, N(p)));
        }
        break;
    case 31:
        if (in_multi) {
            generate(c);
            return;
        }
        add(c, "SCAN");
        add(c, "0");
        add(c, "COUNT");
        add(c, "100");
        if (pick(2)) {
            static const char *const t[] = {"string", "list", "hash"};
            add(c, "TYPE");
            add(c, "%s", one_of(t, N(t)));
        }
        break;
    case 32:
    case 33:
        add(c, "MULTI");
        break;
    case 34:
        add(c, "EXEC");
        break;
    case 35:
        add(c, "DISCARD");
        break;
    case 36:
        add(c, "ECHO");
        add(c, "%s", value());
        break;
    case 37:
        add(c, "PING");
        if (pick(2))
            add(c, "%s", value());
        break;
    case 38: {
        static const char *const d[] = {"0", "1", "2", "x", "-1"};
        add(c, "SELECT");
        add(c, "%s", one_of(d, N(d)));
        break;
    }
    case 39:
        add(c, "FLUSHDB");
        break;
    case 40: {
        static const char *const cur[] = {"x", " 1", "18446744073709551616", "+0", ""};
        if (in_multi) {
            generate(c);
            return;
        }
        add(c, "SCAN");
        add(c, "%s", one_of(cur, N(cur)));
        if (pick(2)) {
            add(c, "COUNT");
            add(c, pick(2) ? "0" : "x");
        }
        break;
    }
    case 41:
        add(c, "GETEX");
        add(c, "%s", k);
        add(c, pick(2) ? "EXAT" : "PXAT");
        add(c, "%s", pick(2) ? "1" : "-1");
        break;
    case 42:
        add(c, "INCRBY");
        add(c, "%s", k);
        add(c, pick(2) ? "9223372036854775807" : "-9223372036854775808");
        break;
    case 44:
        add(c, "WATCH");
        for (unsigned i = 0, n = 1 + pick(2); i < n; i++)
            add(c, "%s", key());
        break;
    case 45:
        add(c, "UNWATCH");
        break;
    default:
        add(c, "NOSUCHCOMMAND");
        add(c, "%s", k);
        break;
    }
    if (c->argc > 0) {
        if (strcmp(c->argv[0], "MULTI") == 0)
            in_multi = true;
        else if (strcmp(c->argv[0], "EXEC") == 0 || strcmp(c->argv[0], "DISCARD") == 0)
            in_multi = false;
    }
}

/* ---- comparing replies ---------------------------------------------------------------------- */

/* A reply reduced to what must agree, in out (NUL-terminated text, escaped). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The elements of the array frame at p (its total length n): pointers to their frames and
 * lengths; returns how many, or -1 if p is no array. */
static int elements(const char *p, size_t n, const char **el, size_t *len, int max)
{
    if (n < 4 || (p[0] != '*' && p[0] != '~'))
        return -1;
    size_t hl = resp_line(p, n);
    long count = strtol(p + 1, NULL, 10);
    if (hl == 0 || count < 0 || count > max)
        return -1;
    size_t off = hl;
    for (long i = 0; i < count; i++) {
        long fl = resp_frame(p + off, n - off, 0);
        if (fl <= 0)
            return -1;
        el[i] = p + off;
        len[i] = (size_t)fl;
        off += (size_t)fl;
    }
    return (int)count;
}

/* Writes the frames as sorted, escaped text. */
static void sorted_set(char *out, size_t cap, const char **el, const size_t *len, int n)
{
    char **items = calloc((size_t)n + 1, sizeof *items);
    for (int i = 0; i < n; i++) {
        items[i] = malloc(len[i] * 4 + 8);
        escape_into(items[i], len[i] * 4 + 8, el[i], len[i]);
    }
    qsort(items, (size_t)n, sizeof *items, cmp_str);
    size_t o = (size_t)snprintf(out, cap, "set of %d:", n);
    for (int i = 0; i < n; i++) {
        if (o < cap)
            o += (size_t)snprintf(out + o, cap - o, " %s", items[i]);
        free(items[i]);
    }
    free(items);
}

#define MAX_ELEMENTS 4096

static void normalize(const struct cmd *c, const char *r, size_t n, char *out, size_t cap)
{
    const char *name = c->argv[0];
    static const char *el[MAX_ELEMENTS];
    static size_t len[MAX_ELEMENTS];
    bool timing = strcmp(name, "TTL") == 0 || strcmp(name, "PTTL") == 0 ||
                  strcmp(name, "EXPIRETIME") == 0 || strcmp(name, "PEXPIRETIME") == 0;
    if (timing && n > 1 && r[0] == ':' && strtoll(r + 1, NULL, 10) > 0) {
        snprintf(out, cap, "a time in the future");
        return;
    }
    if (strcmp(name, "KEYS") == 0) {
        int k = elements(r, n, el, len, MAX_ELEMENTS);
        if (k >= 0) {
            sorted_set(out, cap, el, len, k);
            return;
        }
    }
    if (strcmp(name, "SCAN") == 0) {
        const char *pair[2];
        size_t plen[2];
        if (elements(r, n, pair, plen, 2) == 2) {
            int k = elements(pair[1], plen[1], el, len, MAX_ELEMENTS);
            if (k >= 0) {
                char cursor[64];
                escape_into(cursor, sizeof cursor, pair[0], plen[0]);
                size_t o = (size_t)snprintf(out, cap, "cursor %s, ", cursor);
                sorted_set(out + o, cap - o, el, len, k);
                return;
            }
        }
    }
    escape_into(out, cap, r, n);
}

/* ---- the run -------------------------------------------------------------------------------- */

static void show(const struct cmd *c, char *out, size_t cap)
{
    size_t o = 0;
    for (int i = 0; i < c->argc && o + 8 < cap; i++) {
        char a[120];
        escape_into(a, sizeof a, c->argv[i], c->lens[i] > 100 ? 100 : c->lens[i]);
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i ? " " : "", a);
    }
}

static const char *reply(struct conn *c, const struct cmd *cmd, size_t *n)
{
    const char *r, *why = "";
    long len;
    if (conn_send_cmd(c, cmd->argc, (char **)cmd->argv, cmd->lens) < 0 ||
        (len = conn_read_reply(c, &r, &why)) < 0) {
        char s[600];
        show(cmd, s, sizeof s);
        fprintf(stderr, "no reply to %s: %s\n", s, why);
        exit(1);
    }
    *n = (size_t)len;
    return r;
}

static void send_both(struct conn *t, struct conn *r, const char *a0, const char *a1)
{
    struct cmd c;
    memset(&c, 0, sizeof c);
    add(&c, "%s", a0);
    if (a1)
        add(&c, "%s", a1);
    size_t n;
    reply(t, &c, &n);
    conn_consume(t, n);
    reply(r, &c, &n);
    conn_consume(r, n);
}

/* Runs steps random commands in protocol proto; returns 0, or 1 after printing the first
 * difference. */
static int run(int tally_port, int redis_port, int proto, uint64_t seed, long steps)
{
    struct conn t, r;
    if (conn_open(&t, tally_port) < 0 || conn_open(&r, redis_port) < 0) {
        perror("connect");
        return 1;
    }
    if (proto == 3)
        send_both(&t, &r, "HELLO", "3");
    send_both(&t, &r, "FLUSHALL", NULL);
    rng = seed;
    in_multi = false;
    static struct cmd hist[HISTORY];
    static char a[64 * 1024], b[64 * 1024];
    int failed = 0;
    bool trace = getenv("TALLY_DIFF_TRACE") != NULL; /* every step on stderr */
    for (long i = 0; i < steps && !failed; i++) {
        struct cmd *c = &hist[i % HISTORY];
        generate(c);
        if (trace) {
            char s[800];
            show(c, s, sizeof s);
            fprintf(stderr, "%ld: %s\n", i, s);
        }
        size_t na, nb;
        const char *ra = reply(&t, c, &na);
        normalize(c, ra, na, a, sizeof a);
        conn_consume(&t, na);
        const char *rb = reply(&r, c, &nb);
        normalize(c, rb, nb, b, sizeof b);
        conn_consume(&r, nb);
        if (strcmp(a, b) == 0)
            continue;
        failed = 1;
        fprintf(stderr, "RESP%d, seed %llu, step %ld: the replies differ\n", proto,
                (unsigned long long)seed, i);
        char s[800];
        for (long j = i - HISTORY + 1 > 0 ? i - HISTORY + 1 : 0; j < i; j++) {
            show(&hist[j % HISTORY], s, sizeof s);
            fprintf(stderr, "  before: %s\n", s);
        }
        show(c, s, sizeof s);
        /* From a little before the first byte that differs. */
        size_t at = 0;
        while (a[at] && a[at] == b[at])
            at++;
        size_t from = at > SHOW_BYTES / 4 ? at - SHOW_BYTES / 4 : 0;
        char *sa = a + from, *sb = b + from;
        if (strlen(sa) > SHOW_BYTES)
            sa[SHOW_BYTES] = '\0';
        if (strlen(sb) > SHOW_BYTES)
            sb[SHOW_BYTES] = '\0';
        fprintf(stderr, "  command: %s\n  (replies from byte %zu)\n  tallyd: %s\n  redis:  %s\n", s,
                from, sa, sb);
    }
    conn_close(&t);
    conn_close(&r);
    if (!failed)
        printf("RESP%d: %ld steps, the same replies\n", proto, steps);
    return failed;
}

int main(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: redis-server is not installed (Debian's redis-server package)\n");
        return TEST_SKIP;
    }
    test_require_uring();
    const char *e = getenv("TALLY_DIFF_SEED");
    uint64_t seed = !e || !*e                 ? DEFAULT_SEED
                    : strcmp(e, "clock") == 0 ? (uint64_t)time(NULL)
                                              : strtoull(e, NULL, 10);
    e = getenv("TALLY_DIFF_STEPS");
    long steps = e && *e ? strtol(e, NULL, 10) : DEFAULT_STEPS;
    printf("seed %llu (TALLY_DIFF_SEED replays it), %ld steps per protocol\n",
           (unsigned long long)seed, steps);

    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("differential");
    struct test_server tally, redis;
    srv_init(&tally, tmp, "tally");
    tally.redis = false;
    srv_init_redis(&redis, tmp, "redis");
    srv_start(&tally);
    srv_start(&redis);
    int rc = run(tally.port, redis.port, 2, seed, steps);
    if (rc == 0)
        rc = run(tally.port, redis.port, 3, seed + 1, steps);
    srv_stop_with(&tally, SIGTERM);
    srv_stop_with(&redis, SIGTERM);
    if (rc == 0)
        test_rmdir(tmp);
    free(tmp);
    return rc;
}
