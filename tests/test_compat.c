/*
 * test_compat.c - tallyd answers what Redis 7.0 answers, byte for byte.
 *
 * Replays ../shared/redis-compat/redis-7.0-replies.jsonl (Redis 7.0.15's own replies, recorded
 * over a socket; see that folder's README.md). A group is a run of lines with the same group
 * name and protocol: each gets a fresh connection, FLUSHALL, then HELLO 3 when the protocol is
 * 3, then every command is sent as a RESP multibulk and exactly one reply is read (the RESP2
 * and RESP3 frames are parsed to know where it ends) and compared with the recorded bytes.
 * Lines marked "depends" are compared by their rule: SCAN's cursor may differ but its keys
 * must be the same; CONFIG GET may answer any value, as one name/value pair. Every group runs
 * (TALLY_COMPAT_SKIP names one to skip).
 *
 * Every mismatch is printed with its group, index, command, expected and received bytes
 * (escaped); the last line is "N passed, M failed, K skipped". Fails if any case fails.
 *
 * Environment: TALLYD (the binary; else server/tallyd, ../server/tallyd), TALLY_COMPAT_FILE
 * (else $srcdir/../shared/redis-compat/redis-7.0-replies.jsonl), TALLY_TEST_SERVER=redis to
 * run the same test against a real redis-server (a check of the test itself).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

#define MAX_CASES        4096
#define MAX_ARGS         64
#define TEST_ALARM_S     120
#define SKIPPED_GROUP    "" /* TALLY_COMPAT_SKIP overrides; "" runs every group */
#define SKIPPED_REASON   "TALLY_COMPAT_SKIP"
#define COMPAT_FILE_PATH "shared/redis-compat/redis-7.0-replies.jsonl"

/* ---- a small JSON reader for the recorded lines ------------------------------------------- */

struct compat_case {
    char group[64];
    int proto;
    int argc;
    char *argv[MAX_ARGS];
    size_t arglen[MAX_ARGS];
    char *reply;
    size_t reply_len;
    char depends[256];
    int line;
};

struct json {
    const char *p, *end;
    const char *err;
};

static void json_ws(struct json *j)
{
    while (j->p < j->end && isspace((unsigned char)*j->p))
        j->p++;
}

static bool json_expect(struct json *j, char ch)
{
    json_ws(j);
    if (j->p >= j->end || *j->p != ch) {
        j->err = "unexpected character";
        return false;
    }
    j->p++;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A JSON string; \uXXXX escapes are one byte each (the file stores bytes, one char each). */
static char *json_string(struct json *j, size_t *len)
{
    if (!json_expect(j, '"'))
        return NULL;
    size_t cap = (size_t)(j->end - j->p) + 1, n = 0;
    char *s = malloc(cap);
    if (!s)
        exit(1);
    while (j->p < j->end && *j->p != '"') {
        char ch = *j->p++;
        if (ch == '\\') {
            if (j->p >= j->end)
                break;
            char e = *j->p++;
            switch (e) {
            case 'n':
                ch = '\n';
                break;
            case 'r':
                ch = '\r';
                break;
            case 't':
                ch = '\t';
                break;
            case 'b':
                ch = '\b';
                break;
            case 'f':
                ch = '\f';
                break;
            case 'u': {
                int v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = j->p < j->end ? hexval(*j->p++) : -1;
                    if (h < 0) {
                        j->err = "bad \\u escape";
                        free(s);
                        return NULL;
                    }
                    v = v * 16 + h;
                }
                if (v > 0xff) {
                    j->err = "\\u escape above 0xFF (the file holds bytes)";
                    free(s);
                    return NULL;
                }
                ch = (char)v;
                break;
            }
            default: /* " \ / */
                ch = e;
            }
        }
        s[n++] = ch;
    }
    if (!json_expect(j, '"')) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}

static bool json_skip_value(struct json *j);

/* Parses one line into cs; returns false with j->err on a syntax error. */
static bool json_case(struct json *j, struct compat_case *cs)
{
    memset(cs, 0, sizeof *cs);
    cs->proto = 2;
    if (!json_expect(j, '{'))
        return false;
    for (;;) {
        size_t klen;
        char *key = json_string(j, &klen);
        if (!key || !json_expect(j, ':')) {
            free(key);
            return false;
        }
        json_ws(j);
        bool ok = true;
        if (strcmp(key, "group") == 0 || strcmp(key, "depends") == 0) {
            size_t n;
            char *v = json_string(j, &n);
            ok = v != NULL;
            if (ok)
                snprintf(key[0] == 'g' ? cs->group : cs->depends,
                         key[0] == 'g' ? sizeof cs->group : sizeof cs->depends, "%s", v);
            free(v);
        } else if (strcmp(key, "proto") == 0) {
            char *end;
            cs->proto = (int)strtol(j->p, &end, 10);
            ok = end != j->p;
            j->p = end;
        } else if (strcmp(key, "reply") == 0) {
            cs->reply = json_string(j, &cs->reply_len);
            ok = cs->reply != NULL;
        } else if (strcmp(key, "cmd") == 0) {
            ok = json_expect(j, '[');
            json_ws(j);
            if (ok && j->p < j->end && *j->p == ']') {
                j->p++;
            } else {
                while (ok) {
                    if (cs->argc >= MAX_ARGS) {
                        j->err = "too many arguments";
                        ok = false;
                        break;
                    }
                    cs->argv[cs->argc] = json_string(j, &cs->arglen[cs->argc]);
                    ok = cs->argv[cs->argc] != NULL;
                    if (!ok)
                        break;
                    cs->argc++;
                    json_ws(j);
                    if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                    }
                    ok = json_expect(j, ']');
                    break;
                }
            }
        } else {
            ok = json_skip_value(j);
        }
        free(key);
        if (!ok)
            return false;
        json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return json_expect(j, '}');
    }
}

/* Skips a string, number or flat array of those (enough for fields this test ignores). */
static bool json_skip_value(struct json *j)
{
    json_ws(j);
    if (j->p >= j->end)
        return false;
    if (*j->p == '"') {
        size_t n;
        char *s = json_string(j, &n);
        free(s);
        return s != NULL;
    }
    if (*j->p == '[') {
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        for (;;) {
            if (!json_skip_value(j))
                return false;
            json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return json_expect(j, ']');
        }
    }
    while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
        j->p++;
    return true;
}

static int load_cases(const char *path, struct compat_case *cases, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        struct json j = {.p = line, .end = line + len};
        json_ws(&j);
        if (j.p == j.end)
            continue;
        if (n >= max) {
            fprintf(stderr, "%s: more than %d cases\n", path, max);
            exit(1);
        }
        if (!json_case(&j, &cases[n])) {
            fprintf(stderr, "%s:%d: %s\n", path, lineno, j.err ? j.err : "syntax error");
            exit(1);
        }
        cases[n].line = lineno;
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

/* ---- comparing ------------------------------------------------------------------------------ */

static void print_escaped(FILE *out, const char *p, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r')
            fputs("\\r", out);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

/* The offset of the second element of a two-element array reply, or -1. */
static long second_element(const char *p, size_t n)
{
    size_t line = resp_line(p, n);
    if (line == 0 || (strncmp(p, "*2\r\n", 4) != 0 && strncmp(p, "%1\r\n", 4) != 0))
        return -1;
    long f = resp_frame(p + line, n - line, 0);
    if (f < 0 || p[line] != '$')
        return -1;
    return (long)line + f;
}

/* SCAN: any cursor, the same keys. */
static bool same_scan_keys(const struct compat_case *cs, const char *got, size_t n)
{
    long eo = second_element(cs->reply, cs->reply_len), go = second_element(got, n);
    if (eo < 0 || go < 0)
        return false;
    return cs->reply_len - (size_t)eo == n - (size_t)go &&
           memcmp(cs->reply + eo, got + go, n - (size_t)go) == 0;
}

/* CONFIG GET name: one pair, the same name, any value (an array in RESP2, a map in RESP3). */
static bool is_config_pair(const struct compat_case *cs, const char *got, size_t n)
{
    if (cs->argc < 3 || n < 4)
        return false;
    if (strncmp(got, "*2\r\n", 4) != 0 && strncmp(got, "%1\r\n", 4) != 0)
        return false;
    char want[300];
    int wl = snprintf(want, sizeof want, "$%zu\r\n%s\r\n", cs->arglen[2], cs->argv[2]);
    if (n < 4 + (size_t)wl || memcmp(got + 4, want, (size_t)wl) != 0)
        return false;
    size_t pos = 4 + (size_t)wl;
    long f = resp_frame(got + pos, n - pos, 0);
    return f > 0 && got[pos] == '$' && pos + (size_t)f == n;
}

static bool reply_matches(const struct compat_case *cs, const char *got, size_t n)
{
    if (cs->depends[0] && strcasecmp(cs->argv[0], "SCAN") == 0)
        return same_scan_keys(cs, got, n);
    if (cs->depends[0] && strcasecmp(cs->argv[0], "CONFIG") == 0)
        return is_config_pair(cs, got, n);
    return n == cs->reply_len && memcmp(got, cs->reply, n) == 0;
}

static void print_case(FILE *out, const struct compat_case *cs, int group_no, int index)
{
    fprintf(out, "FAIL %s (RESP%d, group %d) #%d, line %d:", cs->group, cs->proto, group_no, index,
            cs->line);
    for (int i = 0; i < cs->argc; i++) {
        fputc(' ', out);
        print_escaped(out, cs->argv[i], cs->arglen[i]);
    }
    fputc('\n', out);
    if (cs->depends[0])
        fprintf(out, "  depends:  %s\n", cs->depends);
    fputs("  expected: ", out);
    print_escaped(out, cs->reply, cs->reply_len);
    fputc('\n', out);
}

/* Sends a command given as C strings and reads its reply, which must start with prefix. */
static bool simple_cmd(struct conn *c, const char *prefix, int argc, ...)
{
    char *argv[8];
    size_t lens[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    const char *r, *why = "";
    long n;
    if (conn_send_cmd(c, argc, argv, lens) < 0 || (n = conn_read_reply(c, &r, &why)) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], why);
        return false;
    }
    bool ok = strncmp(r, prefix, strlen(prefix)) == 0;
    if (!ok) {
        fprintf(stderr, "%s: expected a reply starting with %s, got ", argv[0], prefix);
        print_escaped(stderr, r, (size_t)n);
        fputc('\n', stderr);
    }
    conn_consume(c, (size_t)n);
    return ok;
}

/* Runs cases[from, to) on one fresh connection. Returns the number of failures. */
static int run_group(int port, struct compat_case *cases, int from, int to, int group_no)
{
    struct conn c;
    int failed = 0;
    if (conn_open(&c, port) < 0) {
        fprintf(stderr, "FAIL %s (RESP%d, group %d): cannot connect: %s\n", cases[from].group,
                cases[from].proto, group_no, strerror(errno));
        return to - from;
    }
    bool ready = simple_cmd(&c, "+OK", 1, "FLUSHALL");
    if (ready && cases[from].proto == 3)
        ready = simple_cmd(&c, "%", 2, "HELLO", "3");
    if (!ready) {
        fprintf(stderr, "FAIL %s (RESP%d, group %d): the group's setup failed\n", cases[from].group,
                cases[from].proto, group_no);
        conn_close(&c);
        return to - from;
    }
    bool lost = false;
    for (int i = from; i < to; i++) {
        struct compat_case *cs = &cases[i];
        const char *got = NULL, *why = "";
        long n = -1;
        if (!lost) {
            if (conn_send_cmd(&c, cs->argc, cs->argv, cs->arglen) < 0)
                why = strerror(errno);
            else
                n = conn_read_reply(&c, &got, &why);
        } else {
            why = "not run: the connection was lost";
        }
        if (n < 0) {
            lost = true;
            failed++;
            print_case(stdout, cs, group_no, i - from);
            printf("  got:      (%s)\n", why);
            continue;
        }
        if (!reply_matches(cs, got, (size_t)n)) {
            failed++;
            print_case(stdout, cs, group_no, i - from);
            fputs("  got:      ", stdout);
            print_escaped(stdout, got, (size_t)n);
            fputc('\n', stdout);
        }
        conn_consume(&c, (size_t)n);
    }
    conn_close(&c);
    return failed;
}

static const char *compat_path(char *buf, size_t cap)
{
    const char *e = getenv("TALLY_COMPAT_FILE");
    if (e && *e)
        return e;
    const char *srcdir = getenv("srcdir");
    const char *candidates[] = {srcdir, ".", ".."};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        if (!candidates[i] || !*candidates[i])
            continue;
        snprintf(buf, cap, "%s/../%s", candidates[i], COMPAT_FILE_PATH);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    snprintf(buf, cap, "%s/../%s", srcdir && *srcdir ? srcdir : ".", COMPAT_FILE_PATH);
    return buf;
}

int main(void)
{
    char pathbuf[4096];
    const char *path = compat_path(pathbuf, sizeof pathbuf);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not found (set TALLY_COMPAT_FILE): %s\n", path, strerror(errno));
        return TEST_SKIP;
    }
    static struct compat_case cases[MAX_CASES];
    int n = load_cases(path, cases, MAX_CASES);
    if (n <= 0) {
        fprintf(stderr, "%s: no cases\n", path);
        return 1;
    }
    if (!srv_is_redis())
        test_require_uring();

    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("compat");
    struct test_server srv;
    srv_init(&srv, tmp, "data");
    srv_start(&srv);
    printf("%d cases from %s against %s on port %d\n", n, path, srv_binary(), srv.port);

    const char *skip_group = getenv("TALLY_COMPAT_SKIP");
    if (!skip_group)
        skip_group = SKIPPED_GROUP;
    int passed = 0, failed = 0, skipped = 0, group_no = 0;
    for (int from = 0; from < n;) {
        int to = from + 1;
        while (to < n && cases[to].proto == cases[from].proto &&
               strcmp(cases[to].group, cases[from].group) == 0)
            to++;
        if (*skip_group && strcmp(cases[from].group, skip_group) == 0) {
            printf("skipped: %s (%s), RESP%d, %d cases\n", skip_group, SKIPPED_REASON,
                   cases[from].proto, to - from);
            skipped += to - from;
        } else {
            int f = run_group(srv.port, cases, from, to, group_no);
            failed += f;
            passed += to - from - f;
        }
        group_no++;
        from = to;
    }

    int st = srv_stop_with(&srv, SIGTERM);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "the server did not exit cleanly on SIGTERM (status %d)\n", st);
        srv_print_log(&srv);
        failed++;
    }
    if (failed == 0 && getenv("TALLY_KEEP_TMP") == NULL)
        test_rmdir(tmp);
    else
        printf("the server's directories and logs are kept in %s\n", tmp);
    free(tmp);
    for (int i = 0; i < n; i++) {
        for (int a = 0; a < cases[i].argc; a++)
            free(cases[i].argv[a]);
        free(cases[i].reply);
    }
    fflush(stdout);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
