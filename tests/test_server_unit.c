/*
 * test_server_unit.c - the connection and server commands (commands_server.c) without a socket:
 * a client struct is fed requests through the real parser and tl_dispatch, and its output
 * buffer is compared byte for byte with what Redis 7.0 answers (or, for Tally's own fields,
 * with the documented format).
 *
 * It checks: PING/ECHO/HELLO/AUTH/SELECT/RESET replies and errors in RESP2 and RESP3; CLIENT
 * SETNAME/GETNAME/LIST/KILL on a registry of fake clients; INFO's section selection and its
 * count of error replies by code (errorstats); CONFIG GET/SET, including that a failing CONFIG
 * SET changes nothing; COMMAND COUNT/INFO/GETKEYS; and that COMMAND DOCS describes every
 * command's arguments so that redis-cli, which rebuilds its hints from that reply, shows the
 * command's own syntax line.
 *
 * No engine is opened (tl_srv->db is NULL): commands that need one are not sent. The program
 * links every server object but main.c and net.c, and defines what those provide.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "testutil.h"

#define MAX_REPLY_DEPTH 16
#define MAX_CLIENTS     4
#define HINT_BYTES      1024

/* ---- what main.c and net.c provide in tallyd ------------------------------------------------- */

static struct tl_server server;
struct tl_server *tl_srv = &server;
static int shutdown_requests;
static struct tl_client *killed[MAX_CLIENTS];
static int n_killed;

void tl_client_register(struct tl_client *c)
{
    pthread_mutex_lock(&server.clients_lock);
    if (server.n_clients < server.cap_clients)
        server.clients[server.n_clients++] = c;
    pthread_mutex_unlock(&server.clients_lock);
}

void tl_client_unregister(struct tl_client *c) {}

void tl_client_kill(struct tl_client *c)
{
    if (n_killed < MAX_CLIENTS)
        killed[n_killed++] = c;
}

void tl_server_request_shutdown(void)
{
    shutdown_requests++;
}

/* ---- helpers --------------------------------------------------------------------------------- */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static void server_init(void)
{
    tl_config_defaults(&server.cfg);
    pthread_mutex_init(&server.cfg_lock, NULL);
    pthread_mutex_init(&server.clients_lock, NULL);
    pthread_mutex_init(&server.scan_lock, NULL);
    pthread_mutex_init(&server.slowlog_lock, NULL);
    pthread_rwlock_init(&server.exec_lock, NULL);
    server.start_ms = tl_now_ms();
    snprintf(server.run_id, sizeof server.run_id, "%040d", 7);
    server.n_workers = 1;
    server.cap_clients = MAX_CLIENTS;
    server.clients = calloc(MAX_CLIENTS, sizeof *server.clients);
    if (!server.clients)
        FAIL("out of memory");
}

static struct tl_client *client_new(uint64_t id, const char *addr)
{
    struct tl_client *c = calloc(1, sizeof *c);
    if (!c)
        FAIL("out of memory");
    c->id = id;
    c->fd = (int)id + 10;
    c->resp = 2;
    c->authenticated = true;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    snprintf(c->laddr, sizeof c->laddr, "127.0.0.1:6380");
    c->created_ms = tl_now_ms();
    tl_client_register(c);
    return c;
}

/* Runs one inline request and returns the reply bytes (valid until the next call). */
static const char *run(struct tl_client *c, const char *request)
{
    static char *reply;
    struct tl_parse_limits lim = {1 << 20, 1024, 1 << 16, false};
    struct tl_args a = {0};
    size_t used = 0;
    char err[256], line[1024];
    snprintf(line, sizeof line, "%s\r\n", request);
    if (tl_parse_request(line, strlen(line), &lim, &a, &used, err, sizeof err) != TL_PARSE_OK)
        FAIL("cannot parse %s: %s", request, err);
    c->out.len = 0;
    tl_dispatch(c, &a, NULL);
    tl_args_free(&a);
    free(reply);
    reply = malloc(c->out.len + 1);
    if (!reply)
        FAIL("out of memory");
    memcpy(reply, c->out.data, c->out.len);
    reply[c->out.len] = '\0';
    return reply;
}

static void expect(struct tl_client *c, const char *request, const char *want)
{
    const char *got = run(c, request);
    if (strcmp(got, want) != 0)
        FAIL("%s: got \"%s\", expected \"%s\"", request, got, want);
}

static void expect_contains(struct tl_client *c, const char *request, const char *part,
                            bool present)
{
    const char *got = run(c, request);
    if ((strstr(got, part) != NULL) != present)
        FAIL("%s: \"%s\" should%s contain \"%s\"", request, got, present ? "" : " not", part);
}

/* ---- a small RESP reader, for COMMAND DOCS --------------------------------------------------- */

struct rv {
    char type; /* '*' for arrays, maps and sets (RESP2), '$' or '+' for strings, ':' */
    long long n;
    char *s;
    struct rv *e;
};

static const char *rv_parse(const char *p, struct rv *v, int depth)
{
    if (depth > MAX_REPLY_DEPTH)
        FAIL("reply nested too deep");
    const char *eol = strstr(p, "\r\n");
    if (!eol)
        FAIL("truncated reply");
    memset(v, 0, sizeof *v);
    v->type = *p;
    if (v->type == '+')
        v->s = strndup(p + 1, (size_t)(eol - p - 1));
    else
        v->n = strtoll(p + 1, NULL, 10);
    p = eol + 2;
    switch (v->type) {
    case '+':
    case ':':
        return p;
    case '$':
        v->s = strndup(p, (size_t)v->n);
        return p + v->n + 2;
    case '*':
        v->e = calloc((size_t)v->n + 1, sizeof *v->e);
        for (long long i = 0; i < v->n; i++)
            p = rv_parse(p, &v->e[i], depth + 1);
        return p;
    default:
        FAIL("unexpected reply type %c", v->type);
    }
}

static void rv_free(struct rv *v)
{
    for (long long i = 0; v->type == '*' && i < v->n; i++)
        rv_free(&v->e[i]);
    free(v->e);
    free(v->s);
}

/* The value of key in a RESP2 map (a flat array), or NULL. */
static const struct rv *rv_get(const struct rv *map, const char *key)
{
    for (long long i = 0; i + 1 < map->n; i += 2)
        if (map->e[i].s && strcmp(map->e[i].s, key) == 0)
            return &map->e[i + 1];
    return NULL;
}

static void cat(char *buf, const char *s)
{
    size_t used = strlen(buf);
    snprintf(buf + used, HINT_BYTES - used, "%s", s);
}

static void render_args(char *out, const struct rv *args, const char *sep);

/* Renders one argument as redis-cli 7.0 does when it builds its hints from COMMAND DOCS. */
static void render_arg(char *out, const struct rv *arg)
{
    const struct rv *name = rv_get(arg, "name"), *type = rv_get(arg, "type");
    const struct rv *token = rv_get(arg, "token"), *flags = rv_get(arg, "flags");
    const struct rv *sub = rv_get(arg, "arguments");
    if (!name || !type || !name->s || !type->s)
        FAIL("an argument without a name or type");
    bool optional = false, multiple = false, multiple_token = false;
    for (long long i = 0; flags && i < flags->n; i++) {
        if (flags->e[i].type != '+')
            FAIL("argument flags must be status replies");
        optional |= strcmp(flags->e[i].s, "optional") == 0;
        multiple |= strcmp(flags->e[i].s, "multiple") == 0;
        multiple_token |= strcmp(flags->e[i].s, "multiple_token") == 0;
    }
    char tok[HINT_BYTES] = "", rep[HINT_BYTES] = "";
    bool pure = strcmp(type->s, "pure-token") == 0;
    if (token)
        cat(tok, token->s);
    if (strcmp(type->s, "oneof") == 0)
        render_args(rep, sub, "|");
    else if (strcmp(type->s, "block") == 0)
        render_args(rep, sub, " ");
    else if (!pure)
        cat(rep, name->s);
    if (tok[0] && !pure)
        cat(tok, " ");
    if (optional)
        cat(out, "[");
    cat(out, tok);
    cat(out, rep);
    if (multiple) {
        cat(out, " [");
        if (multiple_token)
            cat(out, tok);
        cat(out, rep);
        cat(out, " ...]");
    }
    if (optional)
        cat(out, "]");
}

static void render_args(char *out, const struct rv *args, const char *sep)
{
    if (!args || args->type != '*')
        FAIL("arguments must be an array");
    for (long long i = 0; i < args->n; i++) {
        if (i)
            cat(out, sep);
        render_arg(out, &args->e[i]);
    }
}

/* args_doc as redis-cli would show it: without the < > grouping, no spaces around '|'. */
static void normalize_doc(char *out, const char *doc)
{
    size_t n = 0;
    for (const char *p = doc ? doc : ""; *p && n + 1 < HINT_BYTES; p++) {
        if (*p == '<' || *p == '>')
            continue;
        if (*p == ' ' && (p[1] == '|' || (n > 0 && out[n - 1] == '|') || p[1] == ' ' ||
                          p[1] == '>' || (n > 0 && out[n - 1] == '[')))
            continue;
        out[n++] = *p;
    }
    out[n] = '\0';
}

/* Checks one command's COMMAND DOCS entry, and its subcommands'. */
static void check_docs_entry(const char *name, const struct rv *doc, const struct tl_command *cmd)
{
    char want[HINT_BYTES], got[HINT_BYTES] = "";
    const char *fields[] = {"summary", "since", "group", "complexity"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const struct rv *f = rv_get(doc, fields[i]);
        if (!f || f->type != '$')
            FAIL("COMMAND DOCS %s: no %s string", name, fields[i]);
    }
    const struct rv *args = rv_get(doc, "arguments");
    if (args)
        render_args(got, args, " ");
    normalize_doc(want, cmd->args_doc);
    if (strcmp(got, want) != 0)
        FAIL("COMMAND DOCS %s renders as \"%s\", its syntax is \"%s\"", name, got, want);
    const struct rv *subs = rv_get(doc, "subcommands");
    for (long long i = 0; subs && i + 1 < subs->n; i += 2) {
        const char *sub_name = strchr(subs->e[i].s, '|');
        if (!sub_name)
            FAIL("subcommand %s is not named parent|sub", subs->e[i].s);
        const struct tl_command *sc = cmd->subcommands;
        while (sc->name && strcmp(sc->name, sub_name + 1) != 0)
            sc++;
        if (!sc->name)
            FAIL("COMMAND DOCS names an unknown subcommand %s", subs->e[i].s);
        check_docs_entry(subs->e[i].s, &subs->e[i + 1], sc);
    }
}

/* ---- the tests ------------------------------------------------------------------------------- */

static void test_ping_echo(struct tl_client *c)
{
    expect(c, "PING", "+PONG\r\n");
    expect(c, "PING hello", "$5\r\nhello\r\n");
    expect(c, "PING a b", "-ERR wrong number of arguments for 'ping' command\r\n");
    expect(c, "ECHO hi", "$2\r\nhi\r\n");
    expect(c, "ECHO", "-ERR wrong number of arguments for 'echo' command\r\n");
    expect_contains(c, "TIME", "*2\r\n$10\r\n", true);
    /* databases is 16 by default; Redis reads the index as a C int. */
    expect(c, "SELECT 15", "+OK\r\n");
    if (c->db != 15)
        FAIL("SELECT 15 left db %d", c->db);
    expect(c, "SELECT 16", "-ERR DB index is out of range\r\n");
    expect(c, "SELECT -1", "-ERR DB index is out of range\r\n");
    /* redis-server 7.0.15's texts: an int64 past int's range names the range */
    expect(c, "SELECT 2147483648",
           "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n");
    expect(c, "SELECT 9223372036854775807",
           "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n");
    expect(c, "SELECT 99999999999999999999", "-ERR value is not an integer or out of range\r\n");
    expect(c, "SELECT x", "-ERR value is not an integer or out of range\r\n");
    if (c->db != 15)
        FAIL("a failed SELECT changed db to %d", c->db);
    expect(c, "SELECT 0", "+OK\r\n");
    expect(c, "SAVE",
           "-ERR Tally persists every write through its WAL; use tallyctl checkpoint "
           "for a copy\r\n");
}

static void test_hello_auth(struct tl_client *c)
{
    expect(c, "AUTH x",
           "-ERR AUTH <password> called without any password configured for the default user. "
           "Are you sure your configuration is correct?\r\n");
    expect(c, "AUTH default x", "+OK\r\n");
    expect(c, "AUTH nobody x",
           "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    expect(c, "AUTH a b c", "-ERR syntax error\r\n");
    expect(c, "HELLO 4", "-NOPROTO unsupported protocol version\r\n");
    expect(c, "HELLO abc", "-ERR Protocol version is not an integer or out of range\r\n");
    expect(c, "HELLO 3 AUTH", "-ERR Syntax error in HELLO option 'AUTH'\r\n");
    expect(c, "HELLO 3 SETNAME \"a b\"",
           "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
    if (c->resp != 2)
        FAIL("a failed HELLO changed the protocol");

    char want[512];
    snprintf(want, sizeof want,
             "%%8\r\n$6\r\nserver\r\n$5\r\ntally\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
             "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:%" PRIu64
             "\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
             "$7\r\nmodules\r\n*0\r\n$13\r\ntally_version\r\n$%zu\r\n%s\r\n",
             c->id, strlen(TL_VERSION_STRING), TL_VERSION_STRING);
    expect(c, "HELLO 3 SETNAME app", want);
    if (c->resp != 3 || strcmp(c->name, "app") != 0)
        FAIL("HELLO 3 SETNAME app: resp %d name %s", c->resp, c->name);
    expect(c, "PING", "+PONG\r\n");
    expect(c, "CLIENT GETNAME", "$3\r\napp\r\n");
    expect(c, "SELECT 3", "+OK\r\n");
    expect_contains(c, "CLIENT INFO", " db=3 ", true);
    expect(c, "RESET", "+RESET\r\n");
    if (c->resp != 2 || c->name[0] || c->db != 0)
        FAIL("RESET left resp %d name %s db %d", c->resp, c->name, c->db);
    expect(c, "CLIENT GETNAME", "$-1\r\n");

    /* With a password */
    expect(c, "CONFIG SET requirepass s3cret", "+OK\r\n");
    expect(c, "AUTH wrong", "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    expect(c, "RESET", "+RESET\r\n");
    if (c->authenticated)
        FAIL("RESET kept the authentication although a password is required");
    expect(c, "HELLO 3",
           "-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
           "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
           "the RESP protocol version at the same time\r\n"); /* redis-server 7.0.15's text */
    expect(c, "AUTH s3cret", "+OK\r\n");
    expect(c, "RESET", "+RESET\r\n");
    /* node-redis 4 reads this flat array by position: proto must be element 5, as in Redis */
    expect_contains(c, "HELLO 2 AUTH default s3cret",
                    "*16\r\n$6\r\nserver\r\n$5\r\ntally\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
                    "$5\r\nproto\r\n:2\r\n$2\r\nid\r\n",
                    true);
    expect(c, "CONFIG SET requirepass \"\"", "+OK\r\n");
}

static void test_client(struct tl_client *c, struct tl_client *other)
{
    expect(c, "CLIENT SETNAME me", "+OK\r\n");
    expect(c, "CLIENT GETNAME", "$2\r\nme\r\n");
    expect(c, "CLIENT SETNAME \"has space\"",
           "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
    expect(c, "CLIENT SETNAME", "-ERR wrong number of arguments for 'client|setname' command\r\n");
    expect(c, "CLIENT FOO", "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n");
    char want[128];
    snprintf(want, sizeof want, ":%" PRIu64 "\r\n", c->id);
    expect(c, "CLIENT ID", want);

    /* CLIENT INFO: Redis 7.0's field order; cmd is the command being run. */
    const char *line = run(c, "CLIENT INFO");
    char prefix[256];
    snprintf(prefix, sizeof prefix, "id=%" PRIu64 " addr=%s laddr=%s fd=%d name=me age=", c->id,
             c->addr, c->laddr, c->fd);
    if (!strstr(line, prefix))
        FAIL("CLIENT INFO: %s lacks %s", line, prefix);
    const char *order[] = {
        " idle=",      " flags=N ",   " db=0 sub=0 psub=0 ssub=0 multi=-1 ",
        " qbuf=",      " qbuf-free=", " argv-mem=",
        " multi-mem=", " rbs=",       " rbp=",
        " obl=",       " oll=",       " omem=",
        " tot-mem=",   " events=r ",  " cmd=client|info user=default redir=-1 resp=2\n\r\n"};
    const char *at = line;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *next = strstr(at, order[i]);
        if (!next)
            FAIL("CLIENT INFO: %s lacks \"%s\" after position %td", line, order[i], at - line);
        at = next;
    }

    /* CLIENT LIST: one line per client, ID filters */
    const char *all = run(c, "CLIENT LIST");
    int lines = 0;
    for (const char *p = all; (p = strchr(p, '\n')); p++)
        lines += p[-1] != '\r';
    if (lines != 2)
        FAIL("CLIENT LIST shows %d lines for 2 clients: %s", lines, all);
    snprintf(want, sizeof want, "CLIENT LIST ID %" PRIu64, other->id);
    expect_contains(c, want, "name=me ", false);
    /* cmd= follows the other client's last command (the name is copied when it changes). */
    static const char *const other_runs[][2] = {
        {"PING", " cmd=ping "},   {"ECHO k", " cmd=echo "},
        {"ECHO k", " cmd=echo "}, {"CLIENT ID", " cmd=client|id "},
        {"SET k", " cmd=set "},   {"CLIENT ID", " cmd=client|id "},
        {"PING", " cmd=ping "},
    };
    for (size_t i = 0; i < sizeof other_runs / sizeof other_runs[0]; i++) {
        run(other, other_runs[i][0]);
        expect_contains(c, want, other_runs[i][1], true);
    }
    expect_contains(c, "CLIENT LIST TYPE pubsub", "$0\r\n\r\n", true);
    expect(c, "CLIENT LIST TYPE foo", "-ERR Unknown client type 'foo'\r\n");
    expect(c, "CLIENT LIST ID x", "-ERR Invalid client ID\r\n");
    expect(c, "CLIENT LIST FOO", "-ERR syntax error\r\n");

    /* CLIENT KILL, old and new forms */
    expect(c, "CLIENT KILL 1.2.3.4:5", "-ERR No such client\r\n");
    expect(c, "CLIENT KILL ID 0", "-ERR client-id should be greater than 0\r\n");
    expect(c, "CLIENT KILL SKIPME maybe", "-ERR syntax error\r\n");
    snprintf(want, sizeof want, "CLIENT KILL %s", other->addr);
    expect(c, want, "+OK\r\n");
    if (n_killed != 1 || killed[0] != other)
        FAIL("CLIENT KILL addr did not kill the other client");
    expect(c, "CLIENT KILL USER default", ":1\r\n"); /* SKIPME yes by default */
    if (n_killed != 2 || c->close_after_reply)
        FAIL("CLIENT KILL USER default: killed %d, self closing %d", n_killed,
             c->close_after_reply);
    expect(c, "CLIENT NO-EVICT on", "+OK\r\n");
    expect(c, "CLIENT SETINFO lib-name redis-py", "+OK\r\n");
}

static void test_info(struct tl_client *c)
{
    expect(c, "INFO nosuch", "$0\r\n\r\n");
    const char *r = run(c, "INFO server");
    if (strncmp(r, "$", 1) != 0 || !strstr(r, "\r\n# Server\r\nredis_version:7.0.0\r\n") ||
        !strstr(r, "tally_version:" TL_VERSION_STRING "\r\n") || strstr(r, "# Clients"))
        FAIL("INFO server: %s", r);
    /* Sections in INFO's own order, separated by one empty line, whatever the arguments' order */
    r = run(c, "INFO cluster CPU");
    if (!strstr(r, "# CPU\r\n") || !strstr(r, "\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n") ||
        strstr(r, "# Cluster") < strstr(r, "# CPU"))
        FAIL("INFO cluster CPU: %s", r);
    const char *titles[] = {"# Server",     "# Clients",     "# Memory",   "# Persistence",
                            "# Stats",      "# Replication", "# CPU",      "# Modules",
                            "# Errorstats", "# Cluster",     "# Keyspace", "# Storage"};
    r = run(c, "INFO");
    const char *at = r;
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++) {
        at = strstr(at, titles[i]);
        if (!at)
            FAIL("INFO lacks %s in order: %s", titles[i], r);
    }
    expect_contains(c, "INFO persistence", "aof_enabled:1\r\n", true);
    expect_contains(c, "INFO clients", "connected_clients:2\r\n", true);
    c->resp = 3;
    expect_contains(c, "INFO cluster", "=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n", true);
    c->resp = 2;
}

/* Every error reply counts by its code in INFO errorstats and in total_error_replies, as Redis
 * 7.0 counts them: refusals, errors inside EXEC's reply, EXECABORT, and errors CLIENT REPLY OFF
 * drops; CONFIG RESETSTAT zeroes them. */
static void test_errorstats(struct tl_client *c)
{
    expect(c, "CONFIG RESETSTAT", "+OK\r\n");
    expect(c, "INFO errorstats", "$14\r\n# Errorstats\r\n\r\n");
    expect(c, "NOSUCH", "-ERR unknown command 'NOSUCH', with args beginning with: \r\n");
    expect(c, "HELLO 4", "-NOPROTO unsupported protocol version\r\n");
    expect(c, "AUTH nobody x",
           "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    expect(c, "MULTI", "+OK\r\n");
    expect(c, "ECHO", "-ERR wrong number of arguments for 'echo' command\r\n");
    expect(c, "EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n");
    expect(c, "MULTI", "+OK\r\n");
    expect(c, "SELECT 99", "+QUEUED\r\n");
    expect(c, "EXEC", "*1\r\n-ERR DB index is out of range\r\n");
    expect(c, "CLIENT REPLY OFF", "");
    expect(c, "NOSUCH", "");
    expect(c, "CLIENT REPLY ON", "+OK\r\n");
    const char *want = "# Errorstats\r\nerrorstat_ERR:count=4\r\nerrorstat_EXECABORT:count=1\r\n"
                       "errorstat_NOPROTO:count=1\r\nerrorstat_WRONGPASS:count=1\r\n";
    expect_contains(c, "INFO errorstats", want, true);
    expect_contains(c, "INFO", want, true); /* a default section, as in Redis */
    expect_contains(c, "INFO stats", "\r\ntotal_error_replies:7\r\n", true);
    expect(c, "CONFIG RESETSTAT", "+OK\r\n");
    expect_contains(c, "INFO stats", "\r\ntotal_error_replies:0\r\n", true);
    expect(c, "INFO errorstats", "$14\r\n# Errorstats\r\n\r\n");
}

static void test_config(struct tl_client *c)
{
    expect(c, "CONFIG GET maxclients", "*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n");
    expect(c, "CONFIG GET nosuchparam", "*0\r\n");
    expect(c, "CONFIG GET databases", "*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n");
    expect(c, "CONFIG GET *compression",
           "*4\r\n$11\r\ncompression\r\n$3\r\nlz4\r\n$18\r\nbottom-compression\r\n$3\r\nlz4\r\n");
    expect(c, "CONFIG GET block-cache-bytes",
           "*2\r\n$17\r\nblock-cache-bytes\r\n$8\r\n67108864\r\n");
    expect(c, "CONFIG GET block-size-bytes", "*2\r\n$16\r\nblock-size-bytes\r\n$4\r\n4096\r\n");
    expect(c, "CONFIG SET databases 4",
           "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set "
           "immutable config\r\n");
    expect(c, "CONFIG GET save appendonly save",
           "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
    /* Settings Tally does not have, answered as INFO memory describes it (each with the value
     * redis-server 7.0 gives when it has no memory limit) */
    expect(c, "CONFIG GET maxmemory*",
           "*4\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$16\r\nmaxmemory-policy\r\n$10\r\n"
           "noeviction\r\n");
    expect(c, "CONFIG GET notify-keyspace-events",
           "*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n");
    c->resp = 3;
    expect(c, "CONFIG GET maxclients", "%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n");
    c->resp = 2;
    expect(c, "CONFIG SET nosuchparam 1",
           "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuchparam'\r\n");
    expect(c, "CONFIG SET port 7000",
           "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable "
           "config\r\n");
    expect(c, "CONFIG SET maxclients 10 maxclients 20",
           "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - duplicate "
           "parameter\r\n");
    expect(c, "CONFIG SET maxclients",
           "-ERR wrong number of arguments for 'config|set' command\r\n");
    /* All or nothing: the good value is not applied when another one fails. */
    expect_contains(c, "CONFIG SET maxclients 50 timeout abc",
                    "-ERR CONFIG SET failed (possibly related to argument 'timeout') - ", true);
    if (server.cfg.maxclients != 10000)
        FAIL("a failed CONFIG SET changed maxclients to %d", server.cfg.maxclients);
    expect(c, "CONFIG SET MAXCLIENTS 50 timeout 7", "+OK\r\n");
    if (server.cfg.maxclients != 50 || server.cfg.timeout_s != 7)
        FAIL("CONFIG SET did not apply: %d %d", server.cfg.maxclients, server.cfg.timeout_s);
    atomic_store(&server.total_commands, 99);
    expect(c, "CONFIG RESETSTAT", "+OK\r\n");
    if (atomic_load(&server.total_commands) > 1)
        FAIL("CONFIG RESETSTAT kept total_commands");
}

static void test_command(struct tl_client *c)
{
    char want[64];
    snprintf(want, sizeof want, ":%zu\r\n", tl_command_count());
    expect(c, "COMMAND COUNT", want);
    expect(c, "COMMAND COUNT extra",
           "-ERR wrong number of arguments for 'command|count' command\r\n");
    expect(c, "COMMAND INFO nosuch", "*1\r\n$-1\r\n");
    expect(c, "COMMAND INFO config|get",
           /* Redis 7.0's reply, byte for byte */
           "*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*4\r\n+admin\r\n+noscript\r\n+loading\r\n"
           "+stale\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@admin\r\n+@slow\r\n+@dangerous\r\n*0\r\n*0\r\n"
           "*0\r\n");
    expect(c, "COMMAND GETKEYS mset a 1 b 2", "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    expect(c, "COMMAND GETKEYS nosuch a", "-ERR Invalid command specified\r\n");
    expect(c, "COMMAND GETKEYS get a b",
           "-ERR Invalid number of arguments specified for command\r\n");
    expect(c, "COMMAND GETKEYS time x",
           "-ERR Invalid number of arguments specified for command\r\n");
    expect(c, "COMMAND DOCS nosuch", "*0\r\n");
    expect(c, "COMMAND LIST FILTERBY PATTERN slowlog*",
           "*5\r\n$7\r\nslowlog\r\n$11\r\nslowlog|get\r\n$11\r\nslowlog|len\r\n"
           "$13\r\nslowlog|reset\r\n$12\r\nslowlog|help\r\n");
    expect(c, "COMMAND DOCS echo",
           "*2\r\n$4\r\necho\r\n*10\r\n$7\r\nsummary\r\n$25\r\nReturns the given string.\r\n"
           "$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity"
           "\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*4\r\n$4\r\nname\r\n$7\r\nmessage\r\n"
           "$4\r\ntype\r\n$6\r\nstring\r\n");

    /* Every command's documented arguments render back to its syntax line, as redis-cli
     * draws its hints; this also checks the shape redis-cli asserts on. */
    c->out.len = 0;
    const char *docs = run(c, "COMMAND DOCS");
    struct rv top;
    rv_parse(docs, &top, 0);
    if (top.type != '*' || (size_t)top.n != 2 * tl_command_count())
        FAIL("COMMAND DOCS: %lld entries for %zu commands", top.n / 2, tl_command_count());
    for (long long i = 0; i + 1 < top.n; i += 2) {
        const struct tl_command *cmd = tl_command_lookup(top.e[i].s, strlen(top.e[i].s));
        if (!cmd)
            FAIL("COMMAND DOCS names an unknown command %s", top.e[i].s);
        check_docs_entry(top.e[i].s, &top.e[i + 1], cmd);
    }
    rv_free(&top);
}

static void test_slowlog_shutdown(struct tl_client *c)
{
    expect(c, "CONFIG SET slowlog-log-slower-than 0", "+OK\r\n");
    expect(c, "ECHO slow", "$4\r\nslow\r\n");
    const char *r = run(c, "SLOWLOG GET 1");
    char want[512];
    snprintf(want, sizeof want,
             "\r\n*2\r\n$4\r\nECHO\r\n$4\r\nslow\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(c->addr),
             c->addr, strlen(c->name), c->name);
    if (strncmp(r, "*1\r\n*6\r\n:", 9) != 0 || !strstr(r, want))
        FAIL("SLOWLOG GET 1: %s", r);
    expect(c, "SLOWLOG GET x", "-ERR count should be greater than or equal to -1\r\n");
    expect(c, "CONFIG SET slowlog-log-slower-than -1", "+OK\r\n");
    expect(c, "SLOWLOG RESET", "+OK\r\n");
    expect(c, "SLOWLOG LEN", ":0\r\n");
    /* As in Redis 7.0, SHUTDOWN and SAVE are refused inside MULTI and fail the transaction:
     * queued, SHUTDOWN stopped the server at EXEC. */
    expect(c, "MULTI", "+OK\r\n");
    expect(c, "SHUTDOWN NOSAVE", "-ERR Command not allowed inside a transaction\r\n");
    expect(c, "SAVE", "-ERR Command not allowed inside a transaction\r\n");
    expect(c, "PING", "+QUEUED\r\n");
    expect(c, "EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n");
    if (shutdown_requests != 0 || c->close_after_reply)
        FAIL("SHUTDOWN inside MULTI: %d requests", shutdown_requests);
    expect_contains(c, "COMMAND INFO shutdown", "+stale\r\n+no_multi\r\n", true);
    expect(c, "SHUTDOWN ABORT", "-ERR No shutdown in progress.\r\n");
    expect(c, "SHUTDOWN FOO", "-ERR syntax error\r\n");
    expect(c, "SHUTDOWN NOSAVE", "");
    if (shutdown_requests != 1 || !c->close_after_reply)
        FAIL("SHUTDOWN NOSAVE: %d requests", shutdown_requests);
}

/* ---- keyspace.c: engine keys of (database, key) ---------------------------------------------- */

/* memcmp order, a prefix first. */
static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    return r != 0 ? r : (alen > blen) - (alen < blen);
}

/* Checks that key in db encodes to want (want_len bytes) and decodes back, in db and no other. */
static void check_dbkey(int db, const char *key, size_t len, const char *want, size_t want_len)
{
    struct tl_dbkey k;
    if (tl_dbkey_make(&k, db, key, len) != 0)
        FAIL("tl_dbkey_make(db %d, %zu bytes) failed", db, len);
    if (k.len != want_len || memcmp(k.p, want, want_len) != 0)
        FAIL("db %d key of %zu bytes: engine key of %zu bytes, want %zu", db, len, k.len, want_len);
    if (db == 0 && (len == 0 || (unsigned char)key[0] != 0xFF) && k.p != key)
        FAIL("a plain key of db 0 was copied");
    if (tl_dbkey_db(k.p, k.len) != db)
        FAIL("db %d key of %zu bytes decodes to db %d", db, len, tl_dbkey_db(k.p, k.len));
    const char *user;
    size_t ulen;
    if (!tl_dbkey_user(db, k.p, k.len, &user, &ulen) || ulen != len || memcmp(user, key, len))
        FAIL("db %d key of %zu bytes does not decode to itself", db, len);
    for (int other = 0; other < TL_DATABASES_MAX; other++)
        if (other != db && tl_dbkey_user(other, k.p, k.len, &user, &ulen))
            FAIL("db %d key of %zu bytes also decodes in db %d", db, len, other);
    struct tl_dbrange r;
    tl_dbkey_range(db, &r);
    int lo = cmp_bytes(k.p, k.len, r.lo, r.lo_len), hi = cmp_bytes(k.p, k.len, r.hi, r.hi_len);
    if (lo < 0 || (r.hi_len && hi >= 0))
        FAIL("db %d key of %zu bytes is outside the database's range", db, len);
    tl_dbkey_free(&k);
}

static void test_keyspace(void)
{
    /* Octal escapes where a letter follows: "\xFF\x01abc" would read as one hex escape. */
    check_dbkey(0, "abc", 3, "abc", 3);
    check_dbkey(0, "", 0, "", 0);
    check_dbkey(0, "\xFF", 1, "\xFF\x00\xFF", 3);
    check_dbkey(0, "\377\001abc", 5, "\377\000\377\001abc", 7);
    check_dbkey(1, "abc", 3, "\377\001abc", 5);
    check_dbkey(1, "", 0, "\xFF\x01", 2);
    check_dbkey(1, "\xFF", 1, "\xFF\x01\xFF", 3);
    check_dbkey(254, "k", 1, "\377\376k", 3);

    /* A key past the inline buffer, and the limit, the same in every database. */
    size_t big_len = TL_MAX_USER_KEY_BYTES;
    char *big = malloc(big_len + 1);
    char *want = malloc(big_len + TL_DBKEY_PREFIX_BYTES);
    memset(big, 'x', big_len + 1);
    memcpy(want, "\xFF\x07", 2);
    memcpy(want + 2, big, big_len);
    check_dbkey(7, big, big_len, want, big_len + 2);
    check_dbkey(0, big, big_len, big, big_len);
    struct tl_dbkey k;
    if (tl_dbkey_make(&k, 0, big, big_len + 1) != TL_EKEYTOOLONG)
        FAIL("a key of %zu bytes was accepted in db 0", big_len + 1);
    tl_dbkey_free(&k);
    if (tl_dbkey_make(&k, 3, big, big_len + 1) != TL_EKEYTOOLONG)
        FAIL("a key of %zu bytes was accepted in db 3", big_len + 1);
    tl_dbkey_free(&k);
    free(big);
    free(want);

    /* Engine keys no database encodes to (only a data directory from before databases holds
     * them). */
    if (tl_dbkey_db("\xFF", 1) != -1 || tl_dbkey_db("\xFF\x00", 2) != -1 ||
        tl_dbkey_db("\377\000abc", 5) != -1)
        FAIL("a non-canonical engine key was given a database");

    /* The ranges follow each other: db n's hi is db n+1's lo; the last ends where the internal
     * keys (0xFF 0xFF) start, and those belong to no database but sort after every one. */
    struct tl_dbrange r0, r1, rlast;
    tl_dbkey_range(0, &r0);
    tl_dbkey_range(1, &r1);
    tl_dbkey_range(TL_DATABASES_MAX - 1, &rlast);
    if (r0.lo_len != 0 || r0.hi_len != 2 || memcmp(r0.hi, "\xFF\x01", 2) != 0 || r1.lo_len != 2 ||
        memcmp(r1.lo, "\xFF\x01", 2) != 0 || memcmp(r1.hi, "\xFF\x02", 2) != 0 ||
        rlast.hi_len != 2 || memcmp(rlast.lo, "\xFF\xFE", 2) != 0 ||
        memcmp(rlast.hi, TL_INTERNAL_PREFIX, 2) != 0)
        FAIL("database ranges are not as keyspace.c describes");
    if (tl_dbkey_db(TL_INTERNAL_PREFIX "\001abc", 6) != TL_DATABASES_MAX)
        FAIL("an internal key was given a database");
}

/* A command sees the time it started at; outside commands, and for timing, the clock. */
static void test_command_time(struct tl_client *c)
{
    int64_t before = tl_clock_ms();
    CHECK(tl_now_ms() >= before);
    tl_command_time_set(INT64_C(1000000000123456)); /* 2001-09-09, in microseconds */
    CHECK(tl_now_ms() == INT64_C(1000000000123));
    CHECK(tl_clock_ms() >= before);
    tl_command_time_set(0);
    CHECK(tl_now_ms() >= before && tl_now_ms() < before + 60000);
    /* Dispatch sets it for the command and clears it after. */
    tl_command_time_set(INT64_C(1000000000123456));
    expect_contains(c, "TIME", "*2\r\n$10\r\n", true);
    CHECK(tl_now_ms() >= before && tl_now_ms() < before + 60000);
}

int main(void)
{
    test_keyspace();
    server_init();
    struct tl_client *c = client_new(1, "127.0.0.1:50001");
    struct tl_client *other = client_new(2, "127.0.0.1:50002");
    test_ping_echo(c);
    test_hello_auth(c);
    test_client(c, other);
    test_info(c);
    test_errorstats(c);
    test_config(c);
    test_command(c);
    test_command_time(c);
    test_slowlog_shutdown(c);
    printf("test_server_unit: ok\n");
    return 0;
}
