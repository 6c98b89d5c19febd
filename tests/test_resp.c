/*
 * test_resp.c - the request parser and the reply encoders of server/resp.c.
 *
 * Parser: multibulk and inline requests, every Redis protocol error text, the limits, each
 * request fed at every split point (NEED_MORE, with a byte count that never overshoots, then
 * the same result), pipelined requests, and a seeded random round trip. Replies: the exact
 * bytes of every reply type in RESP2 and RESP3, on a client built on the stack.
 */
#include <math.h>

#include "server.h"
#include "testutil.h"

#define LIMIT_BULK      (512LL << 20)
#define LIMIT_MULTIBULK (1LL << 20)
#define LIMIT_INLINE    (64LL << 10)

static const struct tl_parse_limits default_limits = {
    .max_bulk_len = LIMIT_BULK,
    .max_multibulk_len = LIMIT_MULTIBULK,
    .inline_max_size = LIMIT_INLINE,
};

#define CHECK_BYTES(got, got_len, want, want_len)                                                  \
    do {                                                                                           \
        size_t _gl = (got_len), _wl = (want_len);                                                  \
        if (_gl != _wl || memcmp((got), (want), _wl) != 0) {                                       \
            fprintf(stderr, "%s:%d: got %zu bytes:\n", __FILE__, __LINE__, _gl);                   \
            dump_bytes((got), _gl);                                                                \
            fprintf(stderr, "expected %zu bytes:\n", _wl);                                         \
            dump_bytes((want), _wl);                                                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void dump_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t shown = n > 200 ? 200 : n;
    fputs("  \"", stderr);
    for (size_t i = 0; i < shown; i++) {
        if (s[i] == '\r')
            fputs("\\r", stderr);
        else if (s[i] == '\n')
            fputs("\\n", stderr);
        else if (s[i] < 32 || s[i] >= 127)
            fprintf(stderr, "\\x%02x", s[i]);
        else
            fputc(s[i], stderr);
    }
    fprintf(stderr, "\"%s\n", shown < n ? "..." : "");
}

/* tl_peek_request agrees with the parser: a request it peeks has the parser's length and its
 * second argument as the key; a request the parser needs more bytes for, an inline one, "*0"
 * or one of more than TL_PEEK_MAX_ARGS arguments is not peeked. (The peek may pass over
 * requests in forms clients do not send, which the parser takes: "\rx" for "\r\n".) */
static void check_peek(const char *buf, size_t len, int r, const struct tl_args *a, size_t consumed)
{
    const char *key;
    size_t klen;
    size_t n = tl_peek_request(buf, len, &key, &klen);
    if (r == TL_PARSE_NEED_MORE || len == 0 || buf[0] != '*') {
        CHECK_EQ_INT(n, 0);
    } else if (r == TL_PARSE_OK && a->argc >= 1 && a->argc <= TL_PEEK_MAX_ARGS && n > 0) {
        CHECK_EQ_INT(n, consumed);
        if (a->argc >= 2)
            CHECK_BYTES(key, klen, a->argv[1], a->len[1]);
        else
            CHECK_EQ_INT(klen, 0);
    } else if (r == TL_PARSE_OK && (a->argc == 0 || a->argc > TL_PEEK_MAX_ARGS)) {
        CHECK_EQ_INT(n, 0);
    }
}

/* Parses one request from the start of buf; checks the result and returns the arguments. Every
 * parse also checks the peek (check_peek). */
static int parse(const char *buf, size_t len, const struct tl_parse_limits *lim, struct tl_args *a,
                 size_t *consumed, char *err, size_t errlen)
{
    int r = tl_parse_request(buf, len, lim, a, consumed, err, errlen);
    check_peek(buf, len, r, a, *consumed);
    return r;
}

static void test_peek(void)
{
    static const char get[] = "*2\r\n$3\r\nGET\r\n$5\r\nab\0cd\r\n*1\r\n$4\r\nPING\r\n";
    const char *key;
    size_t klen;
    CHECK_EQ_INT(tl_peek_request(get, sizeof get - 1, &key, &klen), 24);
    CHECK_BYTES(key, klen, "ab\0cd", 5);
    CHECK_EQ_INT(tl_peek_request(get + 24, sizeof get - 1 - 24, &key, &klen), 14);
    CHECK_EQ_INT(klen, 0);
    for (size_t k = 0; k < 24; k++)
        CHECK_EQ_INT(tl_peek_request(get, k, &key, &klen), 0);
    CHECK_EQ_INT(tl_peek_request("GET k\r\n", 7, &key, &klen), 0);
    CHECK_EQ_INT(tl_peek_request("*0\r\n", 4, &key, &klen), 0);
    CHECK_EQ_INT(tl_peek_request("*2\r\n:1\r\n:2\r\n", 12, &key, &klen), 0);
    CHECK_EQ_INT(tl_peek_request("*1\r\n$99999999999\r\n", 20, &key, &klen), 0);
    /* One argument more than a peek looks at. */
    struct tl_buf wire = {0};
    CHECK_OK(tl_buf_printf(&wire, "*%d\r\n", TL_PEEK_MAX_ARGS + 1));
    for (int i = 0; i <= TL_PEEK_MAX_ARGS; i++)
        CHECK_OK(tl_buf_append(&wire, "$1\r\nx\r\n", 7));
    CHECK_EQ_INT(tl_peek_request(wire.data, wire.len, &key, &klen), 0);
    tl_buf_free(&wire);
}

/* Checks that buf parses to exactly the arguments want[0..argc) using all len bytes, and that
 * every proper prefix of buf asks for more with a lower bound that never overshoots. */
static void check_request(const char *buf, size_t len, const struct tl_parse_limits *lim, int argc,
                          const char *const *want, const size_t *want_len)
{
    struct tl_args a;
    size_t used;
    char err[256];
    for (size_t k = 0; k < len; k++) {
        int r = parse(buf, k, lim, &a, &used, err, sizeof err);
        if (r != TL_PARSE_NEED_MORE) {
            fprintf(stderr, "prefix of %zu of %zu bytes: result %d (%s)\n", k, len, r, err);
            dump_bytes(buf, len);
            exit(1);
        }
        CHECK(a.argc == 0 && a.argv == NULL);
        CHECK(used > k);
        CHECK(used <= len);
    }
    int r = parse(buf, len, lim, &a, &used, err, sizeof err);
    if (r != TL_PARSE_OK) {
        fprintf(stderr, "result %d (%s) for:\n", r, err);
        dump_bytes(buf, len);
        exit(1);
    }
    CHECK_EQ_INT(used, len);
    CHECK_EQ_INT(a.argc, argc);
    for (int i = 0; i < argc; i++) {
        size_t wl = want_len ? want_len[i] : strlen(want[i]);
        CHECK_BYTES(a.argv[i], a.len[i], want[i], wl);
        CHECK(a.argv[i][a.len[i]] == '\0');
    }
    tl_args_free(&a);
    CHECK(a.argv == NULL && a.argc == 0);
}

#define WANT(...)  ((const char *const[]){__VA_ARGS__})
#define NARGS(...) ((int)(sizeof(WANT(__VA_ARGS__)) / sizeof(char *)))
#define CHECK_REQ(buf, ...)                                                                        \
    check_request((buf), sizeof(buf) - 1, &default_limits, NARGS(__VA_ARGS__), WANT(__VA_ARGS__),  \
                  NULL)

/* Checks that buf (as a whole, and each longer prefix as it arrives) is rejected with text. */
static void check_error_at(const char *buf, size_t len, const struct tl_parse_limits *lim,
                           const char *text, size_t first_bad)
{
    struct tl_args a;
    size_t used;
    char err[256];
    for (size_t k = 0; k <= len; k++) {
        int r = parse(buf, k, lim, &a, &used, err, sizeof err);
        if (k < first_bad) {
            if (r != TL_PARSE_NEED_MORE) {
                fprintf(stderr, "prefix %zu: result %d (%s), expected NEED_MORE\n", k, r, err);
                exit(1);
            }
            CHECK(used > k);
            continue;
        }
        if (r != TL_PARSE_ERROR || strcmp(err, text) != 0) {
            fprintf(stderr, "prefix %zu of %zu: result %d \"%s\", expected the error \"%s\"\n", k,
                    len, r, err, text);
            exit(1);
        }
        CHECK(a.argv == NULL && a.argc == 0);
    }
}

/* The error once all of buf has arrived, and NEED_MORE before (the usual case). */
#define CHECK_ERR(buf, text)                                                                       \
    check_error_at((buf), sizeof(buf) - 1, &default_limits, (text), sizeof(buf) - 1)

static void test_multibulk_basic(void)
{
    CHECK_REQ("*1\r\n$4\r\nPING\r\n", "PING");
    CHECK_REQ("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", "SET", "key", "value");
    CHECK_REQ("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", "ECHO", "");
    /* Binary bytes, CR, LF and NUL inside a bulk are data. */
    static const char bin[] = "*2\r\n$3\r\nSET\r\n$6\r\na\r\n\0\r\n\r\n";
    size_t lens[] = {3, 6};
    check_request(bin, sizeof bin - 1, &default_limits, 2, WANT("SET", "a\r\n\0\r\n"), lens);
    /* Redis skips the two bytes after a bulk and the one after a header's CR unread. */
    CHECK_REQ("*1\r\n$4\r\nPINGxy", "PING");
    CHECK_REQ("*1\rx$4\ryPING\r\n", "PING");
}

static void test_multibulk_empty(void)
{
    struct tl_args a;
    size_t used;
    char err[256];
    static const char *empties[] = {"*0\r\n", "*-1\r\n", "*-100\r\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        size_t n = strlen(empties[i]);
        CHECK_EQ_INT(parse(empties[i], n, &default_limits, &a, &used, err, sizeof err),
                     TL_PARSE_OK);
        CHECK_EQ_INT(a.argc, 0);
        CHECK_EQ_INT(used, n);
        tl_args_free(&a);
    }
}

static void test_multibulk_errors(void)
{
    CHECK_ERR("*abc\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*01\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*+1\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("* 1\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*-0\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*2147483648\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*99999999999999999999\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*1048577\r\n", "ERR Protocol error: invalid multibulk length");
    CHECK_ERR("*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\n$\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\n$01\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\n$536870913\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\n$9223372036854775808\r\n", "ERR Protocol error: invalid bulk length");
    CHECK_ERR("*1\r\nX\r\n", "ERR Protocol error: expected '$', got 'X'");
    CHECK_ERR("*2\r\n$1\r\na\r\n:1\r\n", "ERR Protocol error: expected '$', got ':'");
    /* An empty line where a bulk header belongs: the CR itself is the byte shown. */
    CHECK_ERR("*1\r\n\r\n", "ERR Protocol error: expected '$', got '\r'");

    /* Exactly the limits are fine. */
    CHECK_REQ("*1\r\n$0\r\n\r\n", "");
    struct tl_parse_limits small = {
        .max_bulk_len = 3, .max_multibulk_len = 2, .inline_max_size = 16};
    check_request("*2\r\n$3\r\nabc\r\n$0\r\n\r\n", 19, &small, 2, WANT("abc", ""), NULL);
    check_error_at("*3\r\n", 4, &small, "ERR Protocol error: invalid multibulk length", 4);
    check_error_at("*1\r\n$4\r\n", 8, &small, "ERR Protocol error: invalid bulk length", 8);
}

/* Header lines without their CR: an error once they are longer than inline_max_size,
 * whatever the split. */
static void test_header_too_long(void)
{
    struct tl_parse_limits small = {
        .max_bulk_len = LIMIT_BULK, .max_multibulk_len = LIMIT_MULTIBULK, .inline_max_size = 16};
    /* "*" and 16 digits: 17 bytes, one over. */
    char line[64];
    memset(line, '1', sizeof line);
    line[0] = '*';
    check_error_at(line, 17, &small, "ERR Protocol error: too big mbulk count string", 17);
    check_error_at(line, 40, &small, "ERR Protocol error: too big mbulk count string", 17);
    /* 16 bytes then CR: the count is parsed (and is too large). */
    line[16] = '\r';
    line[17] = '\n';
    check_error_at(line, 18, &small, "ERR Protocol error: invalid multibulk length", 18);

    char bulk[64];
    memcpy(bulk, "*1\r\n", 4);
    memset(bulk + 4, '7', 40);
    bulk[4] = '$';
    check_error_at(bulk, 4 + 17, &small, "ERR Protocol error: too big bulk count string", 21);
    check_error_at(bulk, 44, &small, "ERR Protocol error: too big bulk count string", 21);

    /* With the default 64 KiB, as Redis. */
    size_t big = 70000;
    char *p = malloc(big);
    CHECK(p);
    memset(p, '1', big);
    p[0] = '*';
    struct tl_args a;
    size_t used;
    char err[256];
    CHECK_EQ_INT(parse(p, LIMIT_INLINE, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK_EQ_INT(parse(p, big, &default_limits, &a, &used, err, sizeof err), TL_PARSE_ERROR);
    CHECK(strcmp(err, "ERR Protocol error: too big mbulk count string") == 0);
    memcpy(p, "*1\r\n$", 5);
    CHECK_EQ_INT(parse(p, big, &default_limits, &a, &used, err, sizeof err), TL_PARSE_ERROR);
    CHECK(strcmp(err, "ERR Protocol error: too big bulk count string") == 0);
    free(p);
}

static void test_unauthenticated(void)
{
    struct tl_parse_limits lim = default_limits;
    lim.unauthenticated = true;
    check_error_at("*11\r\n", 5, &lim, "ERR Protocol error: unauthenticated multibulk length", 5);
    check_error_at("*1\r\n$16385\r\n", 12, &lim, "ERR Protocol error: unauthenticated bulk length",
                   12);
    /* Up to the limits is fine (AUTH must get through). */
    check_request("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", 22, &lim, 2, WANT("AUTH", "pw"), NULL);
    struct tl_args a;
    size_t used;
    char err[256];
    CHECK_EQ_INT(parse("*10\r\n$16384\r\n", 13, &lim, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    /* The big-count check comes first, as in Redis. */
    check_error_at("*2147483648\r\n", 13, &lim, "ERR Protocol error: invalid multibulk length", 13);
}

static void test_need_more_hint(void)
{
    /* Once the header of a 1000-byte bulk is in, the hint asks for all of it. */
    struct tl_args a;
    size_t used;
    char err[256];
    static const char req[] = "*2\r\n$4\r\nECHO\r\n$1000\r\n";
    CHECK_EQ_INT(parse(req, sizeof req - 1, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK_EQ_INT(used, sizeof req - 1 + 1000 + 2);
    /* A huge announced bulk allocates nothing and just waits. */
    static const char huge[] = "*1\r\n$536870912\r\n";
    CHECK_EQ_INT(parse(huge, sizeof huge - 1, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK(a.argv == NULL);
    CHECK_EQ_INT(used, sizeof huge - 1 + 536870912 + 2);
    /* A count of many arguments asks for at least 6 bytes each before allocating. */
    static const char many[] = "*1000000\r\n";
    CHECK_EQ_INT(parse(many, sizeof many - 1, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK(a.argv == NULL);
}

static void test_inline(void)
{
    CHECK_REQ("PING\r\n", "PING");
    CHECK_REQ("PING\n", "PING");
    CHECK_REQ("SET a b\r\n", "SET", "a", "b");
    CHECK_REQ("  SET \t a   b  \r\n", "SET", "a", "b");
    CHECK_REQ("SET \"a b\" 'c d'\n", "SET", "a b", "c d");
    CHECK_REQ("ECHO \"\\x41\\x4a\\x7e\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n", "ECHO", "AJ~\n\r\t\b\a\\\"q");
    CHECK_REQ("ECHO \"\\x4\" \"\\xZZ\"\n", "ECHO", "x4", "xZZ");
    CHECK_REQ("ECHO 'it\\'s' 'a\\b'\n", "ECHO", "it's", "a\\b");
    CHECK_REQ("ECHO \"\" ''\n", "ECHO", "", "");
    CHECK_REQ("ECHO a\"b c\"\n", "ECHO", "ab c");
    CHECK_REQ("ECHO a'b c'\n", "ECHO", "ab c");
    CHECK_REQ("ECHO \"a\"\t'b'\n", "ECHO", "a", "b");
    /* Vertical tab and form feed separate only at the start of an argument. */
    CHECK_REQ("ECHO a\vb \fc\n", "ECHO", "a\vb", "c");
    /* A CR alone inside the line separates; only the one before LF is dropped. */
    CHECK_REQ("ECHO a\rb\r\r\n", "ECHO", "a", "b");
    /* \x00 is a real NUL inside the argument. */
    size_t lens[] = {4, 3};
    check_request("ECHO \"a\\x00b\"\n", 14, &default_limits, 2, WANT("ECHO", "a\0b"), lens);
    /* A NUL byte ends the line's text, as for Redis's C string. */
    check_request("GET a\0b c\n", 10, &default_limits, 2, WANT("GET", "a"), NULL);

    struct tl_args a;
    size_t used;
    char err[256];
    static const char *blanks[] = {"\r\n", "\n", "   \t \r\n", "\0abc\n"};
    static const size_t blank_lens[] = {2, 1, 7, 5};
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(parse(blanks[i], blank_lens[i], &default_limits, &a, &used, err, sizeof err),
                     TL_PARSE_OK);
        CHECK_EQ_INT(a.argc, 0);
        CHECK(a.argv == NULL);
        CHECK_EQ_INT(used, blank_lens[i]);
    }
}

static void test_inline_errors(void)
{
    static const char *unbalanced[] = {
        "SET \"a b\n", "SET 'a b\n", "SET \"a\"b\n",    "SET 'a'b\n",  "SET \"a\\\"\n",
        "SET \"a\\\n", "\"\n",       "SET \"abc\"\"\n", "SET 'a\\'\n",
    };
    for (size_t i = 0; i < sizeof unbalanced / sizeof *unbalanced; i++) {
        size_t n = strlen(unbalanced[i]);
        check_error_at(unbalanced[i], n, &default_limits,
                       "ERR Protocol error: unbalanced quotes in request", n);
    }

    struct tl_parse_limits small = {
        .max_bulk_len = LIMIT_BULK, .max_multibulk_len = LIMIT_MULTIBULK, .inline_max_size = 8};
    /* 8 bytes then LF: fine; 9 bytes: too big, at the 9th byte whatever follows. */
    check_request("ECHO abc\n", 9, &small, 2, WANT("ECHO", "abc"), NULL);
    check_request("ECHO ab\r\n", 9, &small, 2, WANT("ECHO", "ab"), NULL);
    check_error_at("ECHO abcd\n", 10, &small, "ERR Protocol error: too big inline request", 9);
    check_error_at("ECHO abc\r\n", 10, &small, "ERR Protocol error: too big inline request", 9);

    size_t big = 70000;
    char *p = malloc(big);
    CHECK(p);
    memset(p, 'a', big);
    struct tl_args a;
    size_t used;
    char err[256];
    CHECK_EQ_INT(parse(p, LIMIT_INLINE, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK_EQ_INT(parse(p, LIMIT_INLINE + 1, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_ERROR);
    CHECK(strcmp(err, "ERR Protocol error: too big inline request") == 0);
    free(p);
}

static void test_pipelined(void)
{
    static const char buf[] = "*1\r\n$4\r\nPING\r\nECHO x\r\n\r\n*0\r\n"
                              "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
    static const int want_argc[] = {1, 2, 0, 0, 2};
    static const char *want_first[] = {"PING", "ECHO", NULL, NULL, "GET"};
    size_t off = 0, len = sizeof buf - 1;
    struct tl_args a;
    size_t used;
    char err[256];
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(parse(buf + off, len - off, &default_limits, &a, &used, err, sizeof err),
                     TL_PARSE_OK);
        CHECK_EQ_INT(a.argc, want_argc[i]);
        if (want_first[i])
            CHECK(strcmp(a.argv[0], want_first[i]) == 0);
        tl_args_free(&a);
        off += used;
    }
    CHECK_EQ_INT(parse(buf + off, len - off, &default_limits, &a, &used, err, sizeof err),
                 TL_PARSE_NEED_MORE);
    CHECK_EQ_INT(used, 8 + 4 + 2); /* "*1\r\n$4\r\n", then PING and its CRLF */
}

/* Random requests, pipelined and cut at random points, parse back to what was encoded. */
static void test_random_round_trip(void)
{
    uint64_t seed = 12345;
    const char *env = getenv("TALLY_SEED");
    if (env)
        seed = strtoull(env, NULL, 10);
    uint64_t st = seed;
    enum { REQS = 2000, MAX_ARGS = 6, MAX_ARG = 40 };
    struct tl_buf wire = {0};
    static char args[REQS][MAX_ARGS][MAX_ARG];
    static size_t arglen[REQS][MAX_ARGS];
    static int argcs[REQS];
    for (int r = 0; r < REQS; r++) {
        argcs[r] = 1 + (int)(test_rand(&st) % MAX_ARGS);
        CHECK_OK(tl_buf_printf(&wire, "*%d\r\n", argcs[r]));
        for (int i = 0; i < argcs[r]; i++) {
            arglen[r][i] = test_rand(&st) % MAX_ARG;
            for (size_t j = 0; j < arglen[r][i]; j++)
                args[r][i][j] = (char)test_rand(&st);
            CHECK_OK(tl_buf_printf(&wire, "$%zu\r\n", arglen[r][i]));
            CHECK_OK(tl_buf_append(&wire, args[r][i], arglen[r][i]));
            CHECK_OK(tl_buf_append(&wire, "\r\n", 2));
        }
    }
    /* Feed the bytes in random pieces through a query buffer, as a connection does. */
    struct tl_buf q = {0};
    size_t fed = 0;
    int r = 0;
    while (r < REQS) {
        size_t piece = 1 + test_rand(&st) % 300;
        if (piece > wire.len - fed)
            piece = wire.len - fed;
        CHECK_OK(tl_buf_append(&q, wire.data + fed, piece));
        fed += piece;
        size_t off = 0;
        for (;;) {
            struct tl_args a;
            size_t used;
            char err[256];
            int res = tl_parse_request(q.data + off, q.len - off, &default_limits, &a, &used, err,
                                       sizeof err);
            if (res == TL_PARSE_NEED_MORE) {
                CHECK(used > q.len - off);
                break;
            }
            if (res != TL_PARSE_OK) {
                fprintf(stderr, "seed %llu: request %d: %s\n", (unsigned long long)seed, r, err);
                exit(1);
            }
            CHECK_EQ_INT(a.argc, argcs[r]);
            for (int i = 0; i < a.argc; i++)
                CHECK_BYTES(a.argv[i], a.len[i], args[r][i], arglen[r][i]);
            /* Requests as clients encode them: peeked whenever they are not too long. */
            const char *key;
            size_t klen;
            size_t peeked = tl_peek_request(q.data + off, q.len - off, &key, &klen);
            if (a.argc >= 1 && a.argc <= TL_PEEK_MAX_ARGS)
                CHECK_EQ_INT(peeked, used);
            check_peek(q.data + off, q.len - off, res, &a, used);
            tl_args_free(&a);
            off += used;
            r++;
        }
        tl_buf_consume(&q, off);
        CHECK(r == REQS || fed < wire.len);
    }
    CHECK_EQ_INT(q.len, 0);
    tl_buf_free(&q);
    tl_buf_free(&wire);
}

/* ---- replies ------------------------------------------------------------------------------- */

static struct tl_client client(int resp)
{
    struct tl_client c;
    memset(&c, 0, sizeof c);
    c.resp = resp;
    return c;
}

#define EXPECT(c, want)                                                                            \
    do {                                                                                           \
        CHECK_BYTES((c)->out.data, (c)->out.len, (want), sizeof(want) - 1);                        \
        (c)->out.len = 0;                                                                          \
    } while (0)

static void test_replies_common(void)
{
    struct tl_client c2 = client(2), c3 = client(3);
    struct tl_client *cs[] = {&c2, &c3}; /* these replies are the same in both protocols */
    for (int k = 0; k < 2; k++) {
        struct tl_client *c = cs[k];
        tl_reply_ok(c);
        EXPECT(c, "+OK\r\n");
        tl_reply_status(c, "QUEUED");
        EXPECT(c, "+QUEUED\r\n");
        tl_reply_status(c, "a\r\nb");
        EXPECT(c, "+a  b\r\n");
        tl_reply_error(c, "ERR syntax error");
        EXPECT(c, "-ERR syntax error\r\n");
        tl_reply_error(c, "ERR line\r\nbreak\n");
        EXPECT(c, "-ERR line  break \r\n");
        tl_reply_errorf(c, "ERR wrong number of arguments for '%s' command", "incr");
        EXPECT(c, "-ERR wrong number of arguments for 'incr' command\r\n");
        tl_reply_int(c, 0);
        EXPECT(c, ":0\r\n");
        tl_reply_int(c, -1);
        EXPECT(c, ":-1\r\n");
        tl_reply_int(c, INT64_MAX);
        EXPECT(c, ":9223372036854775807\r\n");
        tl_reply_int(c, INT64_MIN);
        EXPECT(c, ":-9223372036854775808\r\n");
        tl_reply_bulk(c, "", 0);
        EXPECT(c, "$0\r\n\r\n");
        tl_reply_bulk(c, "a\r\n\0b", 5);
        EXPECT(c, "$5\r\na\r\n\0b\r\n");
        tl_reply_cstr(c, "hello");
        EXPECT(c, "$5\r\nhello\r\n");
        tl_reply_array(c, 0);
        EXPECT(c, "*0\r\n");
        tl_reply_array(c, 3);
        EXPECT(c, "*3\r\n");
        struct tl_val vi = {.type = TL_VAL_INT, .i = -42};
        tl_reply_val(c, &vi);
        EXPECT(c, "$3\r\n-42\r\n");
        vi.i = INT64_MIN;
        tl_reply_val(c, &vi);
        EXPECT(c, "$20\r\n-9223372036854775808\r\n");
        char bytes[] = "v\0x";
        struct tl_val vb = {.type = TL_VAL_BYTES, .bytes = bytes, .len = 3};
        tl_reply_val(c, &vb);
        EXPECT(c, "$3\r\nv\0x\r\n");
    }
    tl_buf_free(&c2.out);
    tl_buf_free(&c3.out);
}

static void test_replies_long(void)
{
    struct tl_client c = client(2);
    /* Past the stack buffer: a long bulk, a long error with line breaks, a long errorf. */
    size_t n = 5000;
    char *big = malloc(n + 1);
    CHECK(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    tl_reply_bulk(&c, big, n);
    CHECK_EQ_INT(c.out.len, 7 + n + 2);
    CHECK(memcmp(c.out.data, "$5000\r\n", 7) == 0);
    CHECK(memcmp(c.out.data + 7, big, n) == 0);
    CHECK(memcmp(c.out.data + 7 + n, "\r\n", 2) == 0);
    c.out.len = 0;

    big[100] = '\r';
    big[200] = '\n';
    tl_reply_error(&c, big);
    CHECK_EQ_INT(c.out.len, 1 + n + 2);
    CHECK(c.out.data[0] == '-' && c.out.data[101] == ' ' && c.out.data[201] == ' ');
    CHECK(memchr(c.out.data, '\r', n + 1) == NULL && memchr(c.out.data, '\n', n + 1) == NULL);
    c.out.len = 0;

    tl_reply_errorf(&c, "ERR %s", big);
    CHECK_EQ_INT(c.out.len, 5 + n + 2);
    CHECK(memcmp(c.out.data, "-ERR ", 5) == 0);
    CHECK(memchr(c.out.data, '\n', 5 + n) == NULL);
    c.out.len = 0;

    /* A client marked closing gets nothing more. */
    c.closing = true;
    tl_reply_ok(&c);
    tl_reply_bulk(&c, big, n);
    CHECK_EQ_INT(c.out.len, 0);
    free(big);
    tl_buf_free(&c.out);
}

static void test_replies_resp2(void)
{
    struct tl_client c = client(2);
    tl_reply_null(&c);
    EXPECT(&c, "$-1\r\n");
    tl_reply_null_array(&c);
    EXPECT(&c, "*-1\r\n");
    tl_reply_map(&c, 2);
    EXPECT(&c, "*4\r\n");
    tl_reply_map(&c, 0);
    EXPECT(&c, "*0\r\n");
    tl_reply_set(&c, 3);
    EXPECT(&c, "*3\r\n");
    tl_reply_double(&c, 1.5);
    EXPECT(&c, "$3\r\n1.5\r\n");
    tl_reply_double(&c, 0.1);
    EXPECT(&c, "$19\r\n0.10000000000000001\r\n");
    tl_reply_double(&c, 0);
    EXPECT(&c, "$1\r\n0\r\n");
    tl_reply_double(&c, 1e300);
    EXPECT(&c, "$23\r\n1.0000000000000001e+300\r\n");
    tl_reply_double(&c, INFINITY);
    EXPECT(&c, "$3\r\ninf\r\n");
    tl_reply_double(&c, -INFINITY);
    EXPECT(&c, "$4\r\n-inf\r\n");
    tl_reply_double(&c, NAN);
    EXPECT(&c, "$3\r\nnan\r\n");
    tl_reply_double_text(&c, "0.1", 3);
    EXPECT(&c, "$3\r\n0.1\r\n");
    tl_reply_bool(&c, true);
    EXPECT(&c, ":1\r\n");
    tl_reply_bool(&c, false);
    EXPECT(&c, ":0\r\n");
    tl_reply_verbatim(&c, "hello", 5);
    EXPECT(&c, "$5\r\nhello\r\n");
    tl_buf_free(&c.out);
}

static void test_replies_resp3(void)
{
    struct tl_client c = client(3);
    tl_reply_null(&c);
    EXPECT(&c, "_\r\n");
    tl_reply_null_array(&c);
    EXPECT(&c, "_\r\n");
    tl_reply_map(&c, 2);
    EXPECT(&c, "%2\r\n");
    tl_reply_set(&c, 3);
    EXPECT(&c, "~3\r\n");
    tl_reply_double(&c, 1.5);
    EXPECT(&c, ",1.5\r\n");
    tl_reply_double(&c, -0.1);
    EXPECT(&c, ",-0.10000000000000001\r\n");
    tl_reply_double(&c, INFINITY);
    EXPECT(&c, ",inf\r\n");
    tl_reply_double(&c, -INFINITY);
    EXPECT(&c, ",-inf\r\n");
    tl_reply_double(&c, -NAN);
    EXPECT(&c, ",nan\r\n");
    tl_reply_double(&c, -1.7976931348623157e308);
    EXPECT(&c, ",-1.7976931348623157e+308\r\n");
    /* INCRBYFLOAT's text as it is, not re-rounded through a double. */
    tl_reply_double_text(&c, "0.1", 3);
    EXPECT(&c, ",0.1\r\n");
    tl_reply_double_text(&c, "-3", 2);
    EXPECT(&c, ",-3\r\n");
    char digits[1000]; /* past the stack buffer, as the text of a huge long double is */
    memset(digits, '9', sizeof digits);
    tl_reply_double_text(&c, digits, sizeof digits);
    CHECK_EQ_INT(c.out.len, 1 + sizeof digits + 2);
    CHECK(c.out.data[0] == ',' && memcmp(c.out.data + 1, digits, sizeof digits) == 0 &&
          memcmp(c.out.data + 1 + sizeof digits, "\r\n", 2) == 0);
    c.out.len = 0;
    tl_reply_bool(&c, true);
    EXPECT(&c, "#t\r\n");
    tl_reply_bool(&c, false);
    EXPECT(&c, "#f\r\n");
    tl_reply_verbatim(&c, "hello", 5);
    EXPECT(&c, "=9\r\ntxt:hello\r\n");
    tl_reply_verbatim(&c, "", 0);
    EXPECT(&c, "=4\r\ntxt:\r\n");
    tl_buf_free(&c.out);
}

int main(void)
{
    test_multibulk_basic();
    test_multibulk_empty();
    test_multibulk_errors();
    test_header_too_long();
    test_unauthenticated();
    test_need_more_hint();
    test_inline();
    test_inline_errors();
    test_pipelined();
    test_peek();
    test_random_round_trip();
    test_replies_common();
    test_replies_long();
    test_replies_resp2();
    test_replies_resp3();
    printf("test_resp: ok\n");
    return 0;
}
