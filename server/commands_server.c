/*
 * commands_server.c - the connection and server commands: PING, ECHO, HELLO, AUTH, QUIT, SELECT,
 * RESET, CLIENT, INFO, CONFIG, COMMAND, TIME, SHUTDOWN, SLOWLOG, LASTSAVE, SAVE and BGSAVE.
 *
 * Replies follow Redis 7.0 byte for byte where a client could tell the difference (the texts of
 * errors, the shapes of HELLO, COMMAND INFO and COMMAND DOCS, CLIENT LIST's line format, INFO's
 * "# Section" layout). Tally answers as a Redis 7.0.0 would in "version" fields, because clients
 * compare that number to decide which commands exist, and reports its own version beside it.
 *
 * Container commands (CLIENT, CONFIG, COMMAND, SLOWLOG) keep their subcommands in tables that
 * COMMAND shows. tl_dispatch finds the subcommand and checks its arity; the container's own
 * handler does the same (run_subcommand) if it is ever called with one, and otherwise answers
 * the command without a subcommand (COMMAND alone lists every command).
 *
 * COMMAND DOCS builds each command's argument tree from its args_doc text, the syntax line that
 * redis-cli shows as a hint: WORD is a token, word an argument, [ ] optional, < > a required
 * group, a|b alternatives, and "x [x ...]" repetition. redis-cli 7 rebuilds its hints from that
 * tree, so a command whose hint renders the same as its args_doc is documented correctly.
 *
 * Other clients' fields are read under clients_lock for CLIENT LIST and KILL; the counters among
 * them (buffer sizes, idle time) are written by the owning worker without that lock, so what
 * CLIENT LIST shows of another client is a snapshot that may be a moment old.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* The Redis version Tally answers as: clients gate features on it (redis-cli uses COMMAND DOCS
 * from 7.0 on). Tally's own version goes in tally_version fields beside it. */
#define TL_REDIS_COMPAT_VERSION "7.0.0"

#define TL_ERR_NO_PASSWORD                                                                         \
    "ERR AUTH <password> called without any password configured for the default user. Are you "    \
    "sure your configuration is correct?"
#define TL_ERR_WRONGPASS   "WRONGPASS invalid username-password pair or user is disabled."
#define TL_ERR_CLIENT_NAME "ERR Client names cannot contain spaces, newlines or special characters."
#define TL_ERR_NOAUTH_HELLO                                                                        \
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "      \
    "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "     \
    "RESP protocol version at the same time"
#define TL_ERR_NO_SAVE                                                                             \
    "ERR Tally persists every write through its WAL; use tallyctl checkpoint for a copy"

#define TL_SUBCOMMAND_NAME_BYTES 64  /* "parent|sub" */
#define TL_SLOWLOG_DEFAULT_GET   10  /* SLOWLOG GET without a count, as Redis */
#define TL_OPS_SAMPLE_MIN_MS     100 /* INFO's ops/sec: shortest interval worth measuring */
#define TL_DOC_MAX_NODES         128 /* argument tree nodes of one command's args_doc */
#define TL_DOC_MAX_SEQ           32  /* arguments in one sequence of args_doc */
#define TL_DOC_MAX_DEPTH         8   /* nesting of [ ] and < > in args_doc */
#define TL_DOC_NAME_BYTES        48  /* an argument's name or token */
#define TL_INFO_MAX_SECTIONS     16

/* ---- shared helpers -------------------------------------------------------------------------- */

/* Runs the subcommand argv[1] of parent from its table, with Redis's errors for an unknown
 * subcommand and a wrong number of arguments ('client|setname'). */
static void run_subcommand(struct tl_client *c, struct tl_args *a, const char *parent,
                           const struct tl_command *subs)
{
    for (const struct tl_command *s = subs; s->name; s++) {
        const char *bar = strchr(s->name, '|');
        const char *short_name = bar ? bar + 1 : s->name;
        if (!tl_arg_eq(a->argv[1], a->len[1], short_name))
            continue;
        if ((s->arity > 0 && a->argc != s->arity) || (s->arity < 0 && a->argc < -s->arity)) {
            char full[TL_SUBCOMMAND_NAME_BYTES];
            snprintf(full, sizeof full, "%s|%s", parent, short_name);
            tl_reply_wrong_arity(c, full);
            return;
        }
        s->fn(c, a);
        return;
    }
    char upper[TL_SUBCOMMAND_NAME_BYTES];
    size_t i;
    for (i = 0; parent[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)toupper((unsigned char)parent[i]);
    upper[i] = '\0';
    tl_reply_errorf(c, "ERR unknown subcommand '%.128s'. Try %s HELP.", a->argv[1], upper);
}

/* Replies a HELP text: the first line names the command, then subcommands and explanations. */
static void reply_help(struct tl_client *c, const char *cmd, const char *const *lines)
{
    size_t n = 0;
    while (lines[n])
        n++;
    tl_reply_array(c, n + 3);
    char head[128];
    snprintf(head, sizeof head, "%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", cmd);
    tl_reply_status(c, head);
    for (size_t i = 0; i < n; i++)
        tl_reply_status(c, lines[i]);
    tl_reply_status(c, "HELP");
    tl_reply_status(c, "    Print this help.");
}

/* NULL if s is a valid client name, else the error: Redis accepts printable ASCII without
 * spaces (an empty name clears it); Tally also bounds the length by the client's field. */
static const char *client_name_error(const char *s, size_t len)
{
    if (len >= sizeof(((struct tl_client *)0)->name))
        return "ERR Client names are limited to 255 bytes";
    for (size_t i = 0; i < len; i++)
        if (s[i] < '!' || s[i] > '~')
            return TL_ERR_CLIENT_NAME;
    return NULL;
}

/* Sets the name under clients_lock, which CLIENT LIST holds while it reads other names. */
static void set_client_name(struct tl_client *c, const char *s, size_t len)
{
    pthread_mutex_lock(&tl_srv->clients_lock);
    memcpy(c->name, s, len);
    c->name[len] = '\0';
    pthread_mutex_unlock(&tl_srv->clients_lock);
}

/* Compares without stopping at the first difference, so timing does not reveal the prefix of
 * the password that matched. */
static bool secret_equal(const char *given, size_t glen, const char *want)
{
    size_t wlen = strlen(want);
    unsigned diff = (unsigned)(glen != wlen);
    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)(wlen ? want[i % wlen] : 0);
    return diff == 0;
}

/* Checks a user and password as AUTH and HELLO AUTH do: Tally has one user, "default". */
static bool check_password(const char *user, size_t ulen, const char *pass, size_t plen)
{
    char want[sizeof tl_srv->cfg.requirepass];
    pthread_mutex_lock(&tl_srv->cfg_lock);
    memcpy(want, tl_srv->cfg.requirepass, sizeof want);
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    want[sizeof want - 1] = '\0';
    if (user && !(ulen == 7 && memcmp(user, "default", 7) == 0))
        return false;
    if (want[0] == '\0')
        return true; /* the default user without a password accepts any */
    return secret_equal(pass, plen, want);
}

static bool requirepass_set(void)
{
    pthread_mutex_lock(&tl_srv->cfg_lock);
    bool set = tl_srv->cfg.requirepass[0] != '\0';
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    return set;
}

/* Bytes as Redis's *_human fields show them: 1.12M, 200B. */
static void human_bytes(char *out, size_t cap, uint64_t n)
{
    static const char units[] = "KMGTPE";
    double d = (double)n;
    if (n < 1024) {
        snprintf(out, cap, "%" PRIu64 "B", n);
        return;
    }
    int u = -1;
    while (d >= 1024 && u < (int)sizeof units - 2) {
        d /= 1024;
        u++;
    }
    snprintf(out, cap, "%.2f%c", d, units[u]);
}

/* ---- connection commands --------------------------------------------------------------------- */

static void cmd_ping(struct tl_client *c, struct tl_args *a)
{
    if (a->argc > 2) {
        tl_reply_wrong_arity(c, "ping");
        return;
    }
    if (a->argc == 2)
        tl_reply_bulk(c, a->argv[1], a->len[1]);
    else
        tl_reply_status(c, "PONG");
}

static void cmd_echo(struct tl_client *c, struct tl_args *a)
{
    tl_reply_bulk(c, a->argv[1], a->len[1]);
}

static void cmd_auth(struct tl_client *c, struct tl_args *a)
{
    if (a->argc > 3) {
        tl_reply_syntax_error(c);
        return;
    }
    if (a->argc == 2 && !requirepass_set()) {
        tl_reply_error(c, TL_ERR_NO_PASSWORD);
        return;
    }
    const char *user = a->argc == 3 ? a->argv[1] : NULL;
    size_t ulen = a->argc == 3 ? a->len[1] : 0;
    int pi = a->argc - 1;
    if (!check_password(user, ulen, a->argv[pi], a->len[pi])) {
        tl_reply_error(c, TL_ERR_WRONGPASS);
        return;
    }
    c->authenticated = true;
    tl_reply_ok(c);
}

static void reply_hello_map(struct tl_client *c)
{
    tl_reply_map(c, 8);
    tl_reply_cstr(c, "server");
    tl_reply_cstr(c, "tally");
    tl_reply_cstr(c, "version");
    tl_reply_cstr(c, TL_REDIS_COMPAT_VERSION);
    tl_reply_cstr(c, "tally_version");
    tl_reply_cstr(c, TL_VERSION_STRING);
    tl_reply_cstr(c, "proto");
    tl_reply_int(c, c->resp);
    tl_reply_cstr(c, "id");
    tl_reply_int(c, (int64_t)c->id);
    tl_reply_cstr(c, "mode");
    tl_reply_cstr(c, "standalone");
    tl_reply_cstr(c, "role");
    tl_reply_cstr(c, "master");
    tl_reply_cstr(c, "modules");
    tl_reply_array(c, 0);
}

/* HELLO [protover [AUTH username password] [SETNAME clientname]]: options are checked first,
 * then the password, then the name; the protocol changes only when all of them pass. */
static void cmd_hello(struct tl_client *c, struct tl_args *a)
{
    int64_t ver = c->resp;
    int auth_at = 0, name_at = 0;
    if (a->argc >= 2) {
        if (!tl_parse_int(a->argv[1], a->len[1], &ver)) {
            tl_reply_error(c, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            tl_reply_error(c, "NOPROTO unsupported protocol version");
            return;
        }
    }
    for (int i = 2; i < a->argc; i++) {
        int more = a->argc - i - 1;
        if (tl_arg_eq(a->argv[i], a->len[i], "AUTH") && more >= 2) {
            auth_at = i + 1;
            i += 2;
        } else if (tl_arg_eq(a->argv[i], a->len[i], "SETNAME") && more >= 1) {
            name_at = i + 1;
            i += 1;
        } else {
            tl_reply_errorf(c, "ERR Syntax error in HELLO option '%.128s'", a->argv[i]);
            return;
        }
    }
    if (auth_at) {
        if (!check_password(a->argv[auth_at], a->len[auth_at], a->argv[auth_at + 1],
                            a->len[auth_at + 1])) {
            tl_reply_error(c, TL_ERR_WRONGPASS);
            return;
        }
        c->authenticated = true;
    }
    if (!c->authenticated) {
        tl_reply_error(c, TL_ERR_NOAUTH_HELLO);
        return;
    }
    if (name_at) {
        const char *err = client_name_error(a->argv[name_at], a->len[name_at]);
        if (err) {
            tl_reply_error(c, err);
            return;
        }
        set_client_name(c, a->argv[name_at], a->len[name_at]);
    }
    c->resp = (int)ver;
    reply_hello_map(c);
}

static void cmd_quit(struct tl_client *c, struct tl_args *a)
{
    tl_reply_ok(c);
    c->close_after_reply = true;
}

/* SELECT index: Redis reads the index as a C int, so a number past its range is "not an
 * integer" and one within it but not a database is "out of range". */
static void cmd_select(struct tl_client *c, struct tl_args *a)
{
    int64_t db;
    if (!tl_parse_int(a->argv[1], a->len[1], &db) || db < INT_MIN || db > INT_MAX) {
        tl_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    if (db < 0 || db >= tl_srv->cfg.databases) {
        tl_reply_error(c, "ERR DB index is out of range");
        return;
    }
    c->db = (int)db;
    tl_reply_ok(c);
}

/* RESET: leaves MULTI, goes back to RESP2 and database 0, forgets the name and, when a password
 * is required, the authentication. */
static void cmd_reset(struct tl_client *c, struct tl_args *a)
{
    tl_multi_discard(c);
    c->resp = 2;
    c->db = 0;
    set_client_name(c, "", 0);
    c->authenticated = !requirepass_set();
    tl_reply_status(c, "RESET");
}

/* ---- CLIENT ---------------------------------------------------------------------------------- */

/* One line of CLIENT LIST in Redis 7.0's format; what Tally does not have (pub/sub,
 * client-side caching) shows as Redis shows it when unused. */
static void client_line(struct tl_buf *b, const struct tl_client *o, int64_t now_ms)
{
    char flags[8], *f = flags;
    if (o->in_multi)
        *f++ = 'x';
    if (o->close_after_reply || o->closing)
        *f++ = 'c';
    if (f == flags)
        *f++ = 'N';
    *f = '\0';

    char cmd[sizeof o->last_cmd];
    memcpy(cmd, o->last_cmd, sizeof cmd);
    cmd[sizeof cmd - 1] = '\0';

    size_t qlen = o->query.len, qcap = o->query.cap, olen = o->out.len, ocap = o->out.cap;
    int64_t age_s = (now_ms - o->created_ms) / 1000;
    int64_t idle_s = (now_ms - (o->last_cmd_ms ? o->last_cmd_ms : o->created_ms)) / 1000;
    tl_buf_printf(b,
                  "id=%" PRIu64 " addr=%s laddr=%s fd=%d name=%s age=%" PRId64 " idle=%" PRId64
                  " flags=%s db=%d sub=0 psub=0 ssub=0 multi=%ld qbuf=%zu qbuf-free=%zu "
                  "argv-mem=0 multi-mem=0 rbs=%zu rbp=%zu obl=%zu oll=0 omem=%zu tot-mem=%zu "
                  "events=%s cmd=%s user=default redir=-1 resp=%d\n",
                  o->id, o->addr, o->laddr, o->fd, o->name, age_s < 0 ? 0 : age_s,
                  idle_s < 0 ? 0 : idle_s, flags, o->db, o->in_multi ? (long)o->n_queued : -1L,
                  qlen, qcap > qlen ? qcap - qlen : 0, ocap, olen, olen, olen,
                  sizeof *o + qcap + ocap, olen ? "rw" : "r", cmd[0] ? cmd : "NULL", o->resp);
}

static void client_id(struct tl_client *c, struct tl_args *a)
{
    tl_reply_int(c, (int64_t)c->id);
}

static void client_setname(struct tl_client *c, struct tl_args *a)
{
    const char *err = client_name_error(a->argv[2], a->len[2]);
    if (err) {
        tl_reply_error(c, err);
        return;
    }
    set_client_name(c, a->argv[2], a->len[2]);
    tl_reply_ok(c);
}

static void client_getname(struct tl_client *c, struct tl_args *a)
{
    if (c->name[0])
        tl_reply_cstr(c, c->name);
    else
        tl_reply_null(c);
}

static void client_info(struct tl_client *c, struct tl_args *a)
{
    struct tl_buf b = {0};
    pthread_mutex_lock(&tl_srv->clients_lock);
    client_line(&b, c, tl_now_ms());
    pthread_mutex_unlock(&tl_srv->clients_lock);
    tl_reply_verbatim(c, b.data ? b.data : "", b.len);
    tl_buf_free(&b);
}

/* Client types Redis names; every Tally client is "normal". */
static int client_type_matches(const char *s, size_t len, bool *normal)
{
    if (tl_arg_eq(s, len, "normal")) {
        *normal = true;
        return 0;
    }
    if (tl_arg_eq(s, len, "master") || tl_arg_eq(s, len, "replica") || tl_arg_eq(s, len, "slave") ||
        tl_arg_eq(s, len, "pubsub")) {
        *normal = false;
        return 0;
    }
    return -1;
}

/* CLIENT LIST [TYPE type] | [ID id [id ...]] */
static void client_list(struct tl_client *c, struct tl_args *a)
{
    bool by_type = false, type_normal = true;
    uint64_t *ids = NULL;
    size_t n_ids = 0;
    struct tl_buf b = {0};

    if (a->argc == 4 && tl_arg_eq(a->argv[2], a->len[2], "TYPE")) {
        by_type = true;
        if (client_type_matches(a->argv[3], a->len[3], &type_normal) < 0) {
            tl_reply_errorf(c, "ERR Unknown client type '%.128s'", a->argv[3]);
            return;
        }
    } else if (a->argc > 3 && tl_arg_eq(a->argv[2], a->len[2], "ID")) {
        ids = malloc(sizeof *ids * (size_t)(a->argc - 3));
        if (!ids) {
            tl_reply_error(c, "ERR out of memory");
            return;
        }
        for (int i = 3; i < a->argc; i++) {
            int64_t id;
            if (!tl_parse_int(a->argv[i], a->len[i], &id)) {
                tl_reply_error(c, "ERR Invalid client ID");
                goto cleanup;
            }
            if (id > 0) /* no client has an id below 1: such ids match nothing, as in Redis */
                ids[n_ids++] = (uint64_t)id;
        }
    } else if (a->argc != 2) {
        tl_reply_syntax_error(c);
        return;
    }

    int64_t now = tl_now_ms();
    pthread_mutex_lock(&tl_srv->clients_lock);
    for (size_t i = 0; i < tl_srv->n_clients; i++) {
        const struct tl_client *o = tl_srv->clients[i];
        if (by_type && !type_normal)
            break;
        if (ids) {
            bool want = false;
            for (size_t j = 0; j < n_ids && !want; j++)
                want = ids[j] == o->id;
            if (!want)
                continue;
        }
        client_line(&b, o, now);
    }
    pthread_mutex_unlock(&tl_srv->clients_lock);
    tl_reply_verbatim(c, b.data ? b.data : "", b.len);

cleanup:
    free(ids);
    tl_buf_free(&b);
}

/* The filters of CLIENT KILL's new form; a client must pass all of them. */
struct kill_filter {
    uint64_t id;       /* 0: any */
    const char *addr;  /* NULL: any */
    const char *laddr; /* NULL: any */
    bool type_set, type_normal;
    bool skipme;
};

static bool kill_matches(const struct kill_filter *f, const struct tl_client *o,
                         const struct tl_client *self)
{
    if (f->skipme && o == self)
        return false;
    if (f->id && o->id != f->id)
        return false;
    if (f->addr && strcmp(o->addr, f->addr) != 0)
        return false;
    if (f->laddr && strcmp(o->laddr, f->laddr) != 0)
        return false;
    if (f->type_set && !f->type_normal)
        return false;
    return true;
}

/* Kills the clients matching f; returns how many. The caller's own connection closes after
 * this reply instead of at once. */
static int kill_clients(struct tl_client *c, const struct kill_filter *f)
{
    int killed = 0;
    pthread_mutex_lock(&tl_srv->clients_lock);
    for (size_t i = 0; i < tl_srv->n_clients; i++) {
        struct tl_client *o = tl_srv->clients[i];
        if (!kill_matches(f, o, c))
            continue;
        if (o == c)
            c->close_after_reply = true;
        else
            tl_client_kill(o);
        killed++;
    }
    pthread_mutex_unlock(&tl_srv->clients_lock);
    return killed;
}

/* CLIENT KILL ip:port | CLIENT KILL <ID id|ADDR ip:port|LADDR ip:port|TYPE t|USER u|SKIPME y/n>...
 */
static void client_kill(struct tl_client *c, struct tl_args *a)
{
    struct kill_filter f = {.skipme = true};
    if (a->argc == 3) {
        f.addr = a->argv[2];
        f.skipme = false;
        if (kill_clients(c, &f) == 0)
            tl_reply_error(c, "ERR No such client");
        else
            tl_reply_ok(c);
        return;
    }
    for (int i = 2; i < a->argc; i += 2) {
        if (i + 1 >= a->argc) {
            tl_reply_syntax_error(c);
            return;
        }
        const char *opt = a->argv[i], *val = a->argv[i + 1];
        size_t olen = a->len[i], vlen = a->len[i + 1];
        if (tl_arg_eq(opt, olen, "ID")) {
            int64_t id;
            if (!tl_parse_int(val, vlen, &id) || id <= 0) {
                tl_reply_error(c, "ERR client-id should be greater than 0");
                return;
            }
            f.id = (uint64_t)id;
        } else if (tl_arg_eq(opt, olen, "TYPE")) {
            if (client_type_matches(val, vlen, &f.type_normal) < 0) {
                tl_reply_errorf(c, "ERR Unknown client type '%.128s'", val);
                return;
            }
            f.type_set = true;
        } else if (tl_arg_eq(opt, olen, "ADDR")) {
            f.addr = val;
        } else if (tl_arg_eq(opt, olen, "LADDR")) {
            f.laddr = val;
        } else if (tl_arg_eq(opt, olen, "USER")) {
            if (!tl_arg_eq(val, vlen, "default")) {
                tl_reply_errorf(c, "ERR No such user '%.128s'", val);
                return;
            }
        } else if (tl_arg_eq(opt, olen, "SKIPME")) {
            if (tl_arg_eq(val, vlen, "yes"))
                f.skipme = true;
            else if (tl_arg_eq(val, vlen, "no"))
                f.skipme = false;
            else {
                tl_reply_syntax_error(c);
                return;
            }
        } else {
            tl_reply_syntax_error(c);
            return;
        }
    }
    tl_reply_int(c, kill_clients(c, &f));
}

/* CLIENT SETINFO LIB-NAME name | LIB-VER version: recorded by nothing, accepted for clients
 * (redis-py, go-redis) that send it when they connect. */
static void client_setinfo(struct tl_client *c, struct tl_args *a)
{
    if (!tl_arg_eq(a->argv[2], a->len[2], "lib-name") &&
        !tl_arg_eq(a->argv[2], a->len[2], "lib-ver")) {
        tl_reply_errorf(c, "ERR Unrecognized option '%.128s'", a->argv[2]);
        return;
    }
    for (size_t i = 0; i < a->len[3]; i++) {
        if (a->argv[3][i] < '!' || a->argv[3][i] > '~') {
            tl_reply_errorf(c, "ERR %s cannot contain spaces, newlines or special characters.",
                            tl_arg_eq(a->argv[2], a->len[2], "lib-name") ? "lib-name" : "lib-ver");
            return;
        }
    }
    tl_reply_ok(c);
}

/* CLIENT NO-EVICT and NO-TOUCH: Tally neither evicts clients nor tracks key access times. */
static void client_on_off(struct tl_client *c, struct tl_args *a)
{
    if (tl_arg_eq(a->argv[2], a->len[2], "on") || tl_arg_eq(a->argv[2], a->len[2], "off"))
        tl_reply_ok(c);
    else
        tl_reply_syntax_error(c);
}

static void client_help(struct tl_client *c, struct tl_args *a)
{
    static const char *const lines[] = {
        "ID",
        "    The id of this connection.",
        "INFO",
        "    One line about this connection, as CLIENT LIST shows it.",
        "GETNAME",
        "    The name of this connection, or nil.",
        "SETNAME <name>",
        "    Names this connection (printable characters, no spaces); \"\" removes the name.",
        "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
        "    One line for each connection, or for those of the type or ids given.",
        "KILL <ip:port>",
        "    Closes the connection from <ip:port>.",
        "KILL <filter> <value> [<filter> <value> ...]",
        "    Closes every connection that passes all the filters; replies how many:",
        "    * ID <id>",
        "    * ADDR <ip:port>, LADDR <ip:port> (the remote or the local address)",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "    * USER <username>",
        "    * SKIPME (YES|NO): leave this connection alone (the default is YES).",
        "SETINFO (LIB-NAME|LIB-VER) <value>",
        "    Accepted for compatibility; Tally does not record it.",
        "NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
        "    Accepted for compatibility; Tally neither evicts clients nor tracks key access.",
        NULL,
    };
    reply_help(c, "CLIENT", lines);
}

static const struct tl_command client_subcommands[] = {
    {"id", 2, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_id, "connection",
     "5.0.0", "Returns the unique client ID of the connection.", "O(1)", "", NULL},
    {"info", 2, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_info, "connection",
     "6.2.0", "Returns information about the connection.", "O(1)", "", NULL},
    {"getname", 2, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_getname,
     "connection", "2.6.9", "Returns the name of the connection.", "O(1)", "", NULL},
    {"setname", 3, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_setname,
     "connection", "2.6.9", "Sets the connection name.", "O(1)", "connection-name", NULL},
    {"list", -2, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     client_list, "connection", "2.4.0", "Lists open connections.",
     "O(N) where N is the number of client connections",
     "[TYPE <NORMAL|MASTER|REPLICA|PUBSUB>] [ID client-id [client-id ...]]", NULL},
    {"kill", -3, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     client_kill, "connection", "2.4.0", "Terminates open connections.",
     "O(N) where N is the number of client connections",
     "ip:port|<[ID client-id] [TYPE <NORMAL|MASTER|SLAVE|REPLICA|PUBSUB>] [USER username] "
     "[ADDR ip:port] [LADDR ip:port] [SKIPME <YES|NO>]>",
     NULL},
    {"setinfo", 4, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_setinfo,
     "connection", "7.2.0", "Sets information specific to the client or connection.", "O(1)",
     "LIB-NAME libname|LIB-VER libver", NULL},
    {"no-evict", 3, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     client_on_off, "connection", "7.0.0",
     "Sets the client eviction mode of the connection (Tally evicts no clients).", "O(1)", "ON|OFF",
     NULL},
    {"no-touch", 3, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_on_off,
     "connection", "7.2.0", "Controls whether commands alter key access times (Tally keeps none).",
     "O(1)", "ON|OFF", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_help, "connection", "5.0.0",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_client(struct tl_client *c, struct tl_args *a)
{
    run_subcommand(c, a, "client", client_subcommands);
}

/* ---- INFO ------------------------------------------------------------------------------------ */

/* What several sections share, gathered once per INFO. */
struct info_ctx {
    int64_t now_ms;
    struct tl_stats st;
    int st_rc; /* 1: not read yet */
};

static const struct tl_stats *info_stats(struct info_ctx *x)
{
    if (x->st_rc == 1)
        x->st_rc = tl_srv->db ? tl_db_stats(tl_srv->db, &x->st) : -EINVAL;
    return x->st_rc == 0 ? &x->st : NULL;
}

static void info_server(struct tl_buf *b, struct info_ctx *x)
{
    struct utsname u;
    char exe[4096] = "";
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    int64_t up_s = (x->now_ms - tl_srv->start_ms) / 1000;
    struct timeval tv;
    gettimeofday(&tv, NULL);

    tl_buf_printf(b, "redis_version:%s\r\n", TL_REDIS_COMPAT_VERSION);
    tl_buf_printf(b, "tally_version:%s\r\n", TL_VERSION_STRING);
    tl_buf_printf(b, "redis_git_sha1:00000000\r\nredis_git_dirty:0\r\n");
    tl_buf_printf(b, "redis_mode:standalone\r\n");
    tl_buf_printf(b, "os:%s %s %s\r\n", u.sysname, u.release, u.machine);
    tl_buf_printf(b, "arch_bits:%zu\r\n", sizeof(void *) * 8);
    tl_buf_printf(b, "monotonic_clock:POSIX clock_gettime\r\n");
    tl_buf_printf(b, "multiplexing_api:io_uring\r\n");
    tl_buf_printf(b, "atomicvar_api:c11-builtin\r\n");
#ifdef __GNUC__
    tl_buf_printf(b, "gcc_version:%d.%d.%d\r\n", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#endif
    tl_buf_printf(b, "process_id:%ld\r\n", (long)getpid());
    tl_buf_printf(b, "process_supervised:no\r\n");
    tl_buf_printf(b, "run_id:%s\r\n", tl_srv->run_id);
    pthread_mutex_lock(&tl_srv->cfg_lock);
    int port = tl_srv->cfg.port;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "tcp_port:%d\r\n", port);
    tl_buf_printf(b, "server_time_usec:%lld\r\n",
                  (long long)tv.tv_sec * 1000000 + (long long)tv.tv_usec);
    tl_buf_printf(b, "uptime_in_seconds:%" PRId64 "\r\n", up_s);
    tl_buf_printf(b, "uptime_in_days:%" PRId64 "\r\n", up_s / 86400);
    tl_buf_printf(b, "executable:%s\r\n", exe);
    tl_buf_printf(b, "config_file:%s\r\n", tl_srv->config_file);
    tl_buf_printf(b, "io_threads_active:%d\r\n", tl_srv->n_workers);
}

static void info_clients(struct tl_buf *b, struct info_ctx *x)
{
    pthread_mutex_lock(&tl_srv->clients_lock);
    size_t n = tl_srv->n_clients;
    pthread_mutex_unlock(&tl_srv->clients_lock);
    pthread_mutex_lock(&tl_srv->cfg_lock);
    int maxclients = tl_srv->cfg.maxclients;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "connected_clients:%zu\r\n", n);
    tl_buf_printf(b, "cluster_connections:0\r\n");
    tl_buf_printf(b, "maxclients:%d\r\n", maxclients);
    tl_buf_printf(b, "blocked_clients:0\r\n");
    tl_buf_printf(b, "tracking_clients:0\r\n");
    tl_buf_printf(b, "clients_in_timeout_table:0\r\n");
}

/* Resident set size from /proc/self/statm (0 if it cannot be read). */
static uint64_t rss_bytes(void)
{
    unsigned long long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &pages_total, &pages_rss) != 2)
        pages_rss = 0;
    fclose(f);
    return (uint64_t)pages_rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void info_memory(struct tl_buf *b, struct info_ctx *x)
{
    char h[32];
    struct mallinfo2 mi = mallinfo2();
    uint64_t used = (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
    uint64_t rss = rss_bytes();
    uint64_t sys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);

    tl_buf_printf(b, "used_memory:%" PRIu64 "\r\n", used);
    human_bytes(h, sizeof h, used);
    tl_buf_printf(b, "used_memory_human:%s\r\n", h);
    tl_buf_printf(b, "used_memory_rss:%" PRIu64 "\r\n", rss);
    human_bytes(h, sizeof h, rss);
    tl_buf_printf(b, "used_memory_rss_human:%s\r\n", h);
    tl_buf_printf(b, "total_system_memory:%" PRIu64 "\r\n", sys);
    human_bytes(h, sizeof h, sys);
    tl_buf_printf(b, "total_system_memory_human:%s\r\n", h);
    tl_buf_printf(b, "maxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n");
    tl_buf_printf(b, "mem_allocator:libc\r\n");
    const struct tl_stats *st = info_stats(x);
    if (st) {
        tl_buf_printf(b, "memtable_bytes:%" PRIu64 "\r\n", st->memtable_bytes);
        tl_buf_printf(b, "block_cache_bytes:%" PRIu64 "\r\n", st->block_cache_bytes);
    }
}

static const char *fsync_name(enum tl_fsync_mode m)
{
    switch (m) {
    case TL_FSYNC_NO:
        return "no";
    case TL_FSYNC_ALWAYS:
        return "always";
    case TL_FSYNC_EVERYSEC:
    default:
        return "everysec";
    }
}

/* Tally has no RDB snapshots: every write is in the WAL, so it reports itself as an AOF server
 * that never rewrites and whose "last save" is its start. */
static void info_persistence(struct tl_buf *b, struct info_ctx *x)
{
    pthread_mutex_lock(&tl_srv->cfg_lock);
    enum tl_fsync_mode fs = tl_srv->cfg.fsync;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "loading:0\r\nasync_loading:0\r\n");
    tl_buf_printf(b, "rdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\n");
    tl_buf_printf(b, "rdb_last_save_time:%" PRId64 "\r\n", tl_srv->start_ms / 1000);
    tl_buf_printf(b, "rdb_last_bgsave_status:ok\r\n");
    tl_buf_printf(b, "aof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n");
    tl_buf_printf(b, "aof_last_write_status:ok\r\n");
    tl_buf_printf(b, "wal_fsync:%s\r\n", fsync_name(fs));
    const struct tl_stats *st = info_stats(x);
    if (st) {
        tl_buf_printf(b, "wal_bytes:%" PRIu64 "\r\n", st->wal_bytes);
        tl_buf_printf(b, "wal_syncs:%" PRIu64 "\r\n", st->wal_syncs);
        tl_buf_printf(b, "last_seq:%" PRIu64 "\r\n", st->last_seq);
    }
    if (tl_srv->db) {
        tl_buf_printf(b, "written_seq:%" PRIu64 "\r\n", tl_db_written_seq(tl_srv->db));
        tl_buf_printf(b, "durable_seq:%" PRIu64 "\r\n", tl_db_durable_seq(tl_srv->db));
    }
}

/* Commands per second between this INFO and the previous one (at least TL_OPS_SAMPLE_MIN_MS
 * apart; the first INFO averages since the start). Simple, and exact for a monitor that polls. */
static uint64_t ops_per_sec(int64_t now_ms)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int64_t sample_ms;
    static uint64_t sample_count, rate;
    uint64_t total = atomic_load(&tl_srv->total_commands);

    pthread_mutex_lock(&lock);
    if (sample_ms == 0 || total < sample_count) {
        int64_t span = now_ms - tl_srv->start_ms;
        rate = span > 0 ? total * 1000 / (uint64_t)span : 0;
        sample_ms = now_ms;
        sample_count = total;
    } else if (now_ms - sample_ms >= TL_OPS_SAMPLE_MIN_MS) {
        rate = (total - sample_count) * 1000 / (uint64_t)(now_ms - sample_ms);
        sample_ms = now_ms;
        sample_count = total;
    }
    uint64_t r = rate;
    pthread_mutex_unlock(&lock);
    return r;
}

static void info_stats_section(struct tl_buf *b, struct info_ctx *x)
{
    struct tl_server *s = tl_srv;
    tl_buf_printf(b, "total_connections_received:%" PRIu64 "\r\n",
                  atomic_load(&s->total_connections));
    tl_buf_printf(b, "total_commands_processed:%" PRIu64 "\r\n", atomic_load(&s->total_commands));
    tl_buf_printf(b, "instantaneous_ops_per_sec:%" PRIu64 "\r\n", ops_per_sec(x->now_ms));
    tl_buf_printf(b, "total_net_input_bytes:%" PRIu64 "\r\n", atomic_load(&s->net_input_bytes));
    tl_buf_printf(b, "total_net_output_bytes:%" PRIu64 "\r\n", atomic_load(&s->net_output_bytes));
    tl_buf_printf(b, "rejected_connections:%" PRIu64 "\r\n", atomic_load(&s->rejected_connections));
    tl_buf_printf(b, "expired_keys:%" PRIu64 "\r\n", atomic_load(&s->expired_keys));
    tl_buf_printf(b, "evicted_keys:0\r\nevicted_clients:0\r\n");
    tl_buf_printf(b, "keyspace_hits:%" PRIu64 "\r\n", atomic_load(&s->keyspace_hits));
    tl_buf_printf(b, "keyspace_misses:%" PRIu64 "\r\n", atomic_load(&s->keyspace_misses));
    tl_buf_printf(b, "pubsub_channels:0\r\npubsub_patterns:0\r\n");
    tl_buf_printf(b, "client_output_buffer_limit_disconnections:%" PRIu64 "\r\n",
                  atomic_load(&s->output_limit_disconnections));
    tl_buf_printf(b, "protocol_errors:%" PRIu64 "\r\n", atomic_load(&s->protocol_errors));
}

static void info_replication(struct tl_buf *b, struct info_ctx *x)
{
    tl_buf_printf(b, "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n");
    tl_buf_printf(b, "master_replid:%s\r\n", tl_srv->run_id);
    tl_buf_printf(b, "master_replid2:0000000000000000000000000000000000000000\r\n");
    tl_buf_printf(b, "master_repl_offset:0\r\nsecond_repl_offset:-1\r\n");
    tl_buf_printf(b, "repl_backlog_active:0\r\nrepl_backlog_size:0\r\n");
    tl_buf_printf(b, "repl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n");
}

static void info_cpu(struct tl_buf *b, struct info_ctx *x)
{
    struct rusage self = {0}, kids = {0};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    tl_buf_printf(b, "used_cpu_sys:%ld.%06ld\r\n", (long)self.ru_stime.tv_sec,
                  (long)self.ru_stime.tv_usec);
    tl_buf_printf(b, "used_cpu_user:%ld.%06ld\r\n", (long)self.ru_utime.tv_sec,
                  (long)self.ru_utime.tv_usec);
    tl_buf_printf(b, "used_cpu_sys_children:%ld.%06ld\r\n", (long)kids.ru_stime.tv_sec,
                  (long)kids.ru_stime.tv_usec);
    tl_buf_printf(b, "used_cpu_user_children:%ld.%06ld\r\n", (long)kids.ru_utime.tv_sec,
                  (long)kids.ru_utime.tv_usec);
}

static void info_modules(struct tl_buf *b, struct info_ctx *x) {}

static void info_cluster(struct tl_buf *b, struct info_ctx *x)
{
    tl_buf_printf(b, "cluster_enabled:0\r\n");
}

/* One line per database that has keys. Counting walks every key, once for all databases
 * (O(keys), as DBSIZE of every database at once): INFO keyspace, and INFO or INFO all, cost that
 * much. Tally does not count keys with an expiry; it reports 0 as Redis does for none. Keys of
 * a database at or past `databases` (left by a run with more) are shown too: they are stored. */
static void info_keyspace(struct tl_buf *b, struct info_ctx *x)
{
    uint64_t counts[TL_DATABASES_MAX];
    if (!tl_srv->db || tl_keyspace_count_all(tl_srv->db, counts) < 0)
        return;
    for (int db = 0; db < TL_DATABASES_MAX; db++)
        if (counts[db] > 0)
            tl_buf_printf(b, "db%d:keys=%" PRIu64 ",expires=0,avg_ttl=0\r\n", db, counts[db]);
}

/* Tally's own section: the LSM tree (DESIGN.md section 2). */
static void info_storage(struct tl_buf *b, struct info_ctx *x)
{
    const struct tl_stats *st = info_stats(x);
    if (!st) {
        tl_buf_printf(b, "storage_error:%s\r\n", tl_srv->db ? tl_last_error() : "no database");
        return;
    }
    tl_buf_printf(b, "memtables:%" PRIu64 "\r\n", st->memtables);
    tl_buf_printf(b, "memtable_bytes:%" PRIu64 "\r\n", st->memtable_bytes);
    tl_buf_printf(b, "memtable_entries:%" PRIu64 "\r\n", st->memtable_entries);
    tl_buf_printf(b, "levels:%d\r\n", st->num_levels);
    for (int i = 0; i < st->num_levels && i < TL_MAX_LEVELS; i++) {
        const struct tl_level_stats *l = &st->levels[i];
        double ratio = l->bytes ? (double)l->raw_bytes / (double)l->bytes : 0.0;
        tl_buf_printf(b,
                      "level%d:files=%" PRIu64 ",bytes=%" PRIu64 ",raw_bytes=%" PRIu64
                      ",compression_ratio=%.2f,entries=%" PRIu64 "\r\n",
                      i, l->files, l->bytes, l->raw_bytes, ratio, l->entries);
    }
    tl_buf_printf(b, "flushes:%" PRIu64 "\r\n", st->flushes);
    tl_buf_printf(b, "flush_bytes:%" PRIu64 "\r\n", st->flush_bytes);
    tl_buf_printf(b, "compactions:%" PRIu64 "\r\n", st->compactions);
    tl_buf_printf(b, "compaction_bytes_read:%" PRIu64 "\r\n", st->compaction_bytes_read);
    tl_buf_printf(b, "compaction_bytes_written:%" PRIu64 "\r\n", st->compaction_bytes_written);
    tl_buf_printf(b, "entries_dropped:%" PRIu64 "\r\n", st->entries_dropped);
    tl_buf_printf(b, "write_amplification:%.2f\r\n", st->write_amplification);
    uint64_t lookups = st->block_cache_hits + st->block_cache_misses;
    tl_buf_printf(b, "block_cache_bytes:%" PRIu64 "\r\n", st->block_cache_bytes);
    tl_buf_printf(b, "block_cache_hits:%" PRIu64 "\r\n", st->block_cache_hits);
    tl_buf_printf(b, "block_cache_misses:%" PRIu64 "\r\n", st->block_cache_misses);
    tl_buf_printf(b, "block_cache_hit_ratio:%.4f\r\n",
                  lookups ? (double)st->block_cache_hits / (double)lookups : 0.0);
    tl_buf_printf(b, "stall_slowdowns:%" PRIu64 "\r\n", st->stall_slowdowns);
    tl_buf_printf(b, "stall_stops:%" PRIu64 "\r\n", st->stall_stops);
}

struct info_section {
    const char *name;  /* as INFO's argument */
    const char *title; /* as its "# Title" line */
    bool in_default;
    void (*fn)(struct tl_buf *b, struct info_ctx *x);
};

/* In the order INFO prints them, whatever the order of the arguments (as Redis). */
static const struct info_section info_sections[] = {
    {"server", "Server", true, info_server},
    {"clients", "Clients", true, info_clients},
    {"memory", "Memory", true, info_memory},
    {"persistence", "Persistence", true, info_persistence},
    {"stats", "Stats", true, info_stats_section},
    {"replication", "Replication", true, info_replication},
    {"cpu", "CPU", true, info_cpu},
    {"modules", "Modules", true, info_modules},
    {"cluster", "Cluster", true, info_cluster},
    {"keyspace", "Keyspace", true, info_keyspace},
    {"storage", "Storage", true, info_storage},
};
#define TL_N_INFO_SECTIONS (sizeof info_sections / sizeof info_sections[0])
_Static_assert(TL_N_INFO_SECTIONS <= TL_INFO_MAX_SECTIONS, "raise TL_INFO_MAX_SECTIONS");

/* Marks the sections INFO's arguments ask for: none means "default"; "all" and "everything"
 * mean every section; unknown names select nothing. */
static void info_select(const struct tl_args *a, int first, bool *want)
{
    memset(want, 0, sizeof(bool) * TL_N_INFO_SECTIONS);
    if (a->argc <= first) {
        for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++)
            want[s] = info_sections[s].in_default;
        return;
    }
    for (int i = first; i < a->argc; i++) {
        bool all = tl_arg_eq(a->argv[i], a->len[i], "all") ||
                   tl_arg_eq(a->argv[i], a->len[i], "everything");
        bool dflt = tl_arg_eq(a->argv[i], a->len[i], "default");
        for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++)
            if (all || (dflt && info_sections[s].in_default) ||
                tl_arg_eq(a->argv[i], a->len[i], info_sections[s].name))
                want[s] = true;
    }
}

/* Builds INFO's text for the selected sections: "# Title" and "field:value" lines, sections
 * separated by an empty line. */
static void info_render(struct tl_buf *b, const bool *want, int64_t now_ms)
{
    struct info_ctx x = {.now_ms = now_ms, .st_rc = 1};
    bool first = true;
    for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++) {
        if (!want[s])
            continue;
        if (!first)
            tl_buf_printf(b, "\r\n");
        first = false;
        tl_buf_printf(b, "# %s\r\n", info_sections[s].title);
        info_sections[s].fn(b, &x);
    }
}

static void cmd_info(struct tl_client *c, struct tl_args *a)
{
    bool want[TL_INFO_MAX_SECTIONS];
    struct tl_buf b = {0};
    info_select(a, 1, want);
    info_render(&b, want, tl_now_ms());
    tl_reply_verbatim(c, b.data ? b.data : "", b.len);
    tl_buf_free(&b);
}

/* ---- CONFIG ---------------------------------------------------------------------------------- */

struct cfg_pair {
    char *name, *value;
};
struct cfg_list {
    struct cfg_pair *v;
    size_t n, cap;
    bool oom;
};

static bool cfg_list_has(const struct cfg_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return true;
    return false;
}

static void cfg_list_add(void *arg, const char *name, const char *value)
{
    struct cfg_list *l = arg;
    if (l->oom || cfg_list_has(l, name))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct cfg_pair *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    char *n = strdup(name), *val = strdup(value);
    if (!n || !val) {
        free(n);
        free(val);
        l->oom = true;
        return;
    }
    l->v[l->n++] = (struct cfg_pair){n, val};
}

static void cfg_list_free(struct cfg_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].value);
    }
    free(l->v);
}

static void lower_copy(char *dst, size_t cap, const char *src, size_t len)
{
    size_t i;
    for (i = 0; i < len && i + 1 < cap; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

/* CONFIG GET pattern [pattern ...]: a map (flat pairs in RESP2) without duplicates. */
static void config_get(struct tl_client *c, struct tl_args *a)
{
    struct cfg_list l = {0};
    pthread_mutex_lock(&tl_srv->cfg_lock);
    for (int i = 2; i < a->argc; i++)
        tl_config_each(&tl_srv->cfg, a->argv[i], cfg_list_add, &l); /* matches ignore case */
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    if (l.oom) {
        tl_reply_error(c, "ERR out of memory");
        goto cleanup;
    }
    tl_reply_map(c, l.n);
    for (size_t i = 0; i < l.n; i++) {
        tl_reply_cstr(c, l.v[i].name);
        tl_reply_cstr(c, l.v[i].value);
    }
cleanup:
    cfg_list_free(&l);
}

struct cfg_exists {
    const char *name;
    bool found;
};

static void cfg_exists_fn(void *arg, const char *name, const char *value)
{
    struct cfg_exists *e = arg;
    if (strcmp(name, e->name) == 0)
        e->found = true;
}

/* CONFIG SET name value [name value ...]: every name is checked (known, mutable, given once)
 * and every value tried on a copy before any is applied, so the command is all or nothing. */
static void config_set(struct tl_client *c, struct tl_args *a)
{
    if (a->argc % 2 != 0) {
        tl_reply_syntax_error(c); /* a name without a value, as Redis answers it */
        return;
    }
    int n = (a->argc - 2) / 2;
    char **names = calloc((size_t)n, sizeof *names);
    struct tl_config *trial = malloc(sizeof *trial);
    char err[256];
    if (!names || !trial) {
        tl_reply_error(c, "ERR out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        size_t len = a->len[2 + 2 * i];
        names[i] = malloc(len + 1);
        if (!names[i]) {
            tl_reply_error(c, "ERR out of memory");
            goto cleanup;
        }
        lower_copy(names[i], len + 1, a->argv[2 + 2 * i], len);
    }

    pthread_mutex_lock(&tl_srv->cfg_lock);
    for (int i = 0; i < n; i++) {
        struct cfg_exists e = {names[i], false};
        tl_config_each(&tl_srv->cfg, names[i], cfg_exists_fn, &e);
        if (!e.found) {
            pthread_mutex_unlock(&tl_srv->cfg_lock);
            tl_reply_errorf(c, "ERR Unknown option or number of arguments for CONFIG SET - '%s'",
                            a->argv[2 + 2 * i]);
            goto cleanup;
        }
        if (!tl_config_is_mutable(names[i])) {
            pthread_mutex_unlock(&tl_srv->cfg_lock);
            tl_reply_errorf(c,
                            "ERR CONFIG SET failed (possibly related to argument '%s') - can't "
                            "set immutable config",
                            names[i]);
            goto cleanup;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                pthread_mutex_unlock(&tl_srv->cfg_lock);
                tl_reply_errorf(c,
                                "ERR CONFIG SET failed (possibly related to argument '%s') - "
                                "duplicate parameter",
                                a->argv[2 + 2 * i]);
                goto cleanup;
            }
        }
    }
    *trial = tl_srv->cfg;
    for (int i = 0; i < n; i++) {
        err[0] = '\0';
        if (tl_config_set(trial, names[i], a->argv[3 + 2 * i], err, sizeof err) != 0) {
            pthread_mutex_unlock(&tl_srv->cfg_lock);
            tl_reply_errorf(c, "ERR CONFIG SET failed (possibly related to argument '%s') - %s",
                            names[i], err[0] ? err : "invalid value");
            goto cleanup;
        }
    }
    /* The same values succeed again on the live settings (tl_config_set also tells log.c of a
     * new loglevel). */
    for (int i = 0; i < n; i++)
        tl_config_set(&tl_srv->cfg, names[i], a->argv[3 + 2 * i], err, sizeof err);
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_reply_ok(c);

cleanup:
    if (names)
        for (int i = 0; i < n; i++)
            free(names[i]);
    free(names);
    free(trial);
}

static void config_resetstat(struct tl_client *c, struct tl_args *a)
{
    struct tl_server *s = tl_srv;
    atomic_store(&s->total_connections, 0);
    atomic_store(&s->rejected_connections, 0);
    atomic_store(&s->total_commands, 0);
    atomic_store(&s->net_input_bytes, 0);
    atomic_store(&s->net_output_bytes, 0);
    atomic_store(&s->expired_keys, 0);
    atomic_store(&s->keyspace_hits, 0);
    atomic_store(&s->keyspace_misses, 0);
    atomic_store(&s->output_limit_disconnections, 0);
    atomic_store(&s->protocol_errors, 0);
    tl_reply_ok(c);
}

static void config_help(struct tl_client *c, struct tl_args *a)
{
    static const char *const lines[] = {
        "GET <pattern> [<pattern> ...]",
        "    The settings whose names match a glob-style pattern, with their values.",
        "SET <setting> <value> [<setting> <value> ...]",
        "    Changes settings while the server runs; all of them or none.",
        "RESETSTAT",
        "    Sets the counters that INFO shows back to zero.",
        NULL,
    };
    reply_help(c, "CONFIG", lines);
}

static const struct tl_command config_subcommands[] = {
    {"get", -3, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, config_get,
     "server", "2.0.0", "Returns the effective values of configuration parameters.",
     "O(N) when N is the number of configuration parameters provided", "parameter [parameter ...]",
     NULL},
    {"set", -4, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, config_set,
     "server", "2.0.0", "Sets configuration parameters in-flight.",
     "O(N) when N is the number of configuration parameters provided",
     "parameter value [parameter value ...]", NULL},
    {"resetstat", 2, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     config_resetstat, "server", "2.0.0", "Resets the server's statistics.", "O(1)", "", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, config_help, "server", "5.0.0",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_config(struct tl_client *c, struct tl_args *a)
{
    run_subcommand(c, a, "config", config_subcommands);
}

/* ---- COMMAND: argument trees from args_doc --------------------------------------------------- */

struct doc_node {
    char name[TL_DOC_NAME_BYTES];
    char token[TL_DOC_NAME_BYTES]; /* "" when none */
    const char *type; /* key string integer double pattern unix-time pure-token oneof block */
    bool optional, multiple, multiple_token; /* multiple_token: the token repeats too */
    int child;                               /* first child (oneof, block), -1 */
    int next;                                /* next sibling, -1 */
};

struct doc_tree {
    struct doc_node nodes[TL_DOC_MAX_NODES];
    int n;
    bool failed; /* too many nodes or too deep: the command is shown without arguments */
};

enum doc_tok { DOC_END, DOC_OPEN, DOC_CLOSE, DOC_BAR, DOC_DOTS, DOC_WORD };

struct doc_lexer {
    const char *p;
    enum doc_tok kind;
    bool optional_group; /* DOC_OPEN was '[' rather than '<' */
    char word[TL_DOC_NAME_BYTES];
};

static void doc_next(struct doc_lexer *lx)
{
    while (*lx->p == ' ')
        lx->p++;
    char ch = *lx->p;
    lx->word[0] = '\0';
    if (ch == '\0') {
        lx->kind = DOC_END;
        return;
    }
    lx->p++;
    if (ch == '[' || ch == '<') {
        lx->kind = DOC_OPEN;
        lx->optional_group = ch == '[';
    } else if (ch == ']' || ch == '>') {
        lx->kind = DOC_CLOSE;
    } else if (ch == '|') {
        lx->kind = DOC_BAR;
    } else if (ch == '.' && strncmp(lx->p, "..", 2) == 0) {
        lx->p += 2;
        lx->kind = DOC_DOTS;
    } else {
        size_t n = 0;
        lx->word[n++] = ch;
        while (*lx->p && !strchr(" []<>|", *lx->p)) {
            if (n + 1 < sizeof lx->word)
                lx->word[n++] = *lx->p;
            lx->p++;
        }
        lx->word[n] = '\0';
        lx->kind = DOC_WORD;
    }
}

static bool doc_is_token(const char *w)
{
    bool upper = false;
    for (; *w; w++) {
        if (islower((unsigned char)*w))
            return false;
        upper |= isupper((unsigned char)*w) != 0;
    }
    return upper;
}

/* The type COMMAND DOCS gives an argument, guessed from its name. */
static const char *doc_type(const char *name)
{
    static const char *const integers[] = {
        "seconds",   "milliseconds", "count",     "index",    "cursor",  "increment",
        "decrement", "numkeys",      "client-id", "protover", "timeout", "port",
        "maxage",    "start",        "end",       "offset",   "number",  "limit",
        "delta",     "max_burst",    "period",    "quantity",
    };
    size_t len = strlen(name);
    if (strcmp(name, "key") == 0 || (len > 3 && strcmp(name + len - 3, "key") == 0) ||
        strcmp(name, "destination") == 0 || strcmp(name, "source") == 0)
        return "key";
    if (strcmp(name, "pattern") == 0)
        return "pattern";
    if (strncmp(name, "unix-time", 9) == 0)
        return "unix-time";
    if (strstr(name, "float"))
        return "double";
    for (size_t i = 0; i < sizeof integers / sizeof integers[0]; i++)
        if (strcmp(name, integers[i]) == 0)
            return "integer";
    return "string";
}

static int doc_new(struct doc_tree *t, const char *name, const char *type)
{
    if (t->n >= TL_DOC_MAX_NODES) {
        t->failed = true;
        return -1;
    }
    char copy[TL_DOC_NAME_BYTES]; /* name may be another node's */
    snprintf(copy, sizeof copy, "%s", name);
    struct doc_node *d = &t->nodes[t->n];
    memset(d, 0, sizeof *d);
    memcpy(d->name, copy, sizeof copy);
    d->type = type;
    d->child = d->next = -1;
    return t->n++;
}

/* Links items[0..n) as siblings; returns the first or -1. */
static int doc_link(struct doc_tree *t, const int *items, int n)
{
    for (int i = 0; i + 1 < n; i++)
        t->nodes[items[i]].next = items[i + 1];
    if (n > 0)
        t->nodes[items[n - 1]].next = -1;
    return n > 0 ? items[0] : -1;
}

static int doc_list_len(const struct doc_tree *t, int head)
{
    int n = 0;
    for (int i = head; i >= 0; i = t->nodes[i].next)
        n++;
    return n;
}

/* One node for a list: the node itself, or a block holding several. */
static int doc_wrap(struct doc_tree *t, int head)
{
    if (head < 0 || t->nodes[head].next < 0)
        return head;
    int b = doc_new(t, t->nodes[head].name, "block");
    if (b >= 0)
        t->nodes[b].child = head;
    return b;
}

/* Whether y repeats x: "ID id [id ...]" repeats the value, "[TOKEN v [TOKEN v ...]]" both. */
static bool doc_same(const struct doc_node *x, const struct doc_node *y)
{
    return strcmp(x->name, y->name) == 0 && strcmp(x->type, y->type) == 0 &&
           (y->token[0] == '\0' || strcmp(x->token, y->token) == 0);
}

static int doc_alt(struct doc_lexer *lx, struct doc_tree *t, bool *repeat, int depth);

/* A sequence of arguments up to ']', '>', '|' or the end. "x [x ...]" becomes x with the
 * multiple flag; *repeat reports a trailing "..." (the sequence is itself a repetition). */
static int doc_seq(struct doc_lexer *lx, struct doc_tree *t, bool *repeat, int depth)
{
    int items[TL_DOC_MAX_SEQ], n = 0;
    while (!t->failed && lx->kind != DOC_END && lx->kind != DOC_CLOSE && lx->kind != DOC_BAR) {
        int node = -1;
        if (n >= TL_DOC_MAX_SEQ || depth > TL_DOC_MAX_DEPTH) {
            t->failed = true;
            break;
        }
        if (lx->kind == DOC_DOTS) {
            *repeat = true;
            doc_next(lx);
            continue;
        }
        if (lx->kind == DOC_WORD) {
            char word[TL_DOC_NAME_BYTES];
            snprintf(word, sizeof word, "%s", lx->word);
            doc_next(lx);
            if (!doc_is_token(word)) {
                node = doc_new(t, word, doc_type(word));
            } else if (lx->kind == DOC_WORD && !doc_is_token(lx->word)) {
                /* TOKEN value */
                node = doc_new(t, lx->word, doc_type(lx->word));
                doc_next(lx);
            } else if (lx->kind == DOC_OPEN && !lx->optional_group) {
                /* TOKEN <a|b>: the group's one node takes the token */
                bool inner_repeat = false;
                doc_next(lx);
                node = doc_wrap(t, doc_alt(lx, t, &inner_repeat, depth + 1));
                if (lx->kind == DOC_CLOSE)
                    doc_next(lx);
            } else {
                char lower[TL_DOC_NAME_BYTES];
                lower_copy(lower, sizeof lower, word, strlen(word));
                node = doc_new(t, lower, "pure-token");
            }
            if (node >= 0 && doc_is_token(word))
                snprintf(t->nodes[node].token, sizeof t->nodes[node].token, "%s", word);
        } else if (lx->kind == DOC_OPEN) {
            bool optional = lx->optional_group, inner_repeat = false;
            doc_next(lx);
            int inner = doc_alt(lx, t, &inner_repeat, depth + 1);
            if (lx->kind == DOC_CLOSE)
                doc_next(lx);
            if (inner < 0)
                continue;
            int k = doc_list_len(t, inner);
            if (inner_repeat && k <= n) {
                bool same = true;
                int i = inner;
                for (int j = n - k; j < n && same; j++, i = t->nodes[i].next)
                    same = doc_same(&t->nodes[items[j]], &t->nodes[i]);
                if (same) {
                    /* "x [x ...]": the x before becomes repeatable */
                    int rep = items[n - k];
                    if (k > 1) {
                        rep = doc_new(t, t->nodes[items[n - k]].name, "block");
                        if (rep < 0)
                            break;
                        t->nodes[rep].child = doc_link(t, items + n - k, k);
                    }
                    t->nodes[rep].multiple = true;
                    t->nodes[rep].multiple_token = k == 1 && t->nodes[inner].token[0] != '\0';
                    n -= k;
                    items[n++] = rep;
                    continue;
                }
            }
            node = doc_wrap(t, inner);
            if (node >= 0) {
                t->nodes[node].optional |= optional;
                t->nodes[node].multiple |= inner_repeat;
            }
        } else {
            doc_next(lx); /* a stray token: skip it */
            continue;
        }
        if (node >= 0)
            items[n++] = node;
    }
    return doc_link(t, items, n);
}

/* Alternatives "a|b|c" of sequences; one alternative is the sequence itself. */
static int doc_alt(struct doc_lexer *lx, struct doc_tree *t, bool *repeat, int depth)
{
    int first = doc_seq(lx, t, repeat, depth);
    if (lx->kind != DOC_BAR)
        return first;
    int items[TL_DOC_MAX_SEQ], n = 0;
    char name[TL_DOC_NAME_BYTES] = "";
    if (first >= 0)
        items[n++] = doc_wrap(t, first);
    while (lx->kind == DOC_BAR && !t->failed) {
        bool r = false;
        doc_next(lx);
        int s = doc_wrap(t, doc_seq(lx, t, &r, depth));
        if (s < 0)
            continue;
        if (n >= TL_DOC_MAX_SEQ) {
            t->failed = true;
            break;
        }
        items[n++] = s;
    }
    /* Named after its alternatives ("nx-xx", "ex-px-exat"), by token where they have one, as
     * many whole words as fit. */
    for (int i = 0; i < n; i++) {
        const struct doc_node *alt = &t->nodes[items[i]];
        char part[TL_DOC_NAME_BYTES];
        lower_copy(part, sizeof part, alt->token[0] ? alt->token : alt->name,
                   strlen(alt->token[0] ? alt->token : alt->name));
        size_t used = strlen(name), plen = strlen(part);
        if (used + plen + 2 > sizeof name)
            break;
        if (used)
            name[used++] = '-';
        memcpy(name + used, part, plen + 1);
    }
    int o = doc_new(t, name, "oneof");
    if (o >= 0)
        t->nodes[o].child = doc_link(t, items, n);
    return o;
}

/* Parses args_doc into t; returns the first top-level argument or -1 (none, or unparseable). */
static int doc_parse(const char *args_doc, struct doc_tree *t)
{
    struct doc_lexer lx = {.p = args_doc ? args_doc : ""};
    bool repeat = false;
    t->n = 0;
    t->failed = false;
    doc_next(&lx);
    int head = doc_alt(&lx, t, &repeat, 0);
    if (head >= 0 && repeat) {
        head = doc_wrap(t, head);
        if (head >= 0)
            t->nodes[head].multiple = true;
    }
    return t->failed ? -1 : head;
}

static void reply_doc_args(struct tl_client *c, const struct doc_tree *t, int head)
{
    tl_reply_array(c, (size_t)doc_list_len(t, head));
    for (int i = head; i >= 0; i = t->nodes[i].next) {
        const struct doc_node *d = &t->nodes[i];
        bool is_key = strcmp(d->type, "key") == 0;
        size_t nflags = (size_t)d->optional + (size_t)d->multiple + (size_t)d->multiple_token;
        tl_reply_map(c,
                     2 + (size_t)is_key + (d->token[0] != '\0') + (nflags > 0) + (d->child >= 0));
        tl_reply_cstr(c, "name");
        tl_reply_cstr(c, d->name);
        tl_reply_cstr(c, "type");
        tl_reply_cstr(c, d->type);
        if (is_key) {
            /* Tally describes each command's keys with one key spec. */
            tl_reply_cstr(c, "key_spec_index");
            tl_reply_int(c, 0);
        }
        if (d->token[0]) {
            tl_reply_cstr(c, "token");
            tl_reply_cstr(c, d->token);
        }
        if (nflags) {
            tl_reply_cstr(c, "flags");
            tl_reply_set(c, nflags);
            if (d->optional)
                tl_reply_status(c, "optional");
            if (d->multiple)
                tl_reply_status(c, "multiple");
            if (d->multiple_token)
                tl_reply_status(c, "multiple_token");
        }
        if (d->child >= 0) {
            tl_reply_cstr(c, "arguments");
            reply_doc_args(c, t, d->child);
        }
    }
}

/* ---- COMMAND: info, docs, list, getkeys ------------------------------------------------------ */

struct cmd_vec {
    const struct tl_command **v;
    size_t n, cap;
    bool oom;
};

static void cmd_vec_add(void *arg, const struct tl_command *cmd)
{
    struct cmd_vec *cv = arg;
    if (cv->oom)
        return;
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 64;
        const struct tl_command **v = realloc(cv->v, cap * sizeof *v);
        if (!v) {
            cv->oom = true;
            return;
        }
        cv->v = v;
        cv->cap = cap;
    }
    cv->v[cv->n++] = cmd;
}

static size_t table_len(const struct tl_command *subs)
{
    size_t n = 0;
    while (subs && subs[n].name)
        n++;
    return n;
}

/* The name COMMAND shows: "get", or "config|get" for a subcommand. */
static void full_name(char *out, size_t cap, const struct tl_command *parent,
                      const struct tl_command *cmd)
{
    if (parent && !strchr(cmd->name, '|'))
        snprintf(out, cap, "%s|%s", parent->name, cmd->name);
    else
        snprintf(out, cap, "%s", cmd->name);
}

/* Finds "name" or "parent|sub"; *parent is set for a subcommand. */
static const struct tl_command *find_command(const char *s, size_t len,
                                             const struct tl_command **parent)
{
    const char *bar = memchr(s, '|', len);
    *parent = NULL;
    if (!bar)
        return tl_command_lookup(s, len);
    const struct tl_command *p = tl_command_lookup(s, (size_t)(bar - s));
    if (!p || !p->subcommands)
        return NULL;
    const char *sub = bar + 1;
    size_t sublen = len - (size_t)(bar - s) - 1;
    for (const struct tl_command *x = p->subcommands; x->name; x++) {
        const char *xb = strchr(x->name, '|');
        const char *xs = xb ? xb + 1 : x->name;
        if (strlen(xs) == sublen && strncasecmp(xs, sub, sublen) == 0) {
            *parent = p;
            return x;
        }
    }
    return NULL;
}

struct flag_name {
    unsigned flag;
    const char *name;
};

static const struct flag_name command_flags[] = {
    {TL_CMD_WRITE, "write"},   {TL_CMD_READONLY, "readonly"}, {TL_CMD_ADMIN, "admin"},
    {TL_CMD_PUBSUB, "pubsub"}, {TL_CMD_NOSCRIPT, "noscript"}, {TL_CMD_LOADING, "loading"},
    {TL_CMD_STALE, "stale"},   {TL_CMD_FAST, "fast"},         {TL_CMD_NOAUTH, "no_auth"},
};

/* The ACL categories Redis would give (read/write, the group's, admin, fast or slow), in the
 * order Redis lists them. */
static size_t acl_categories(const struct tl_command *cmd, const char **out)
{
    const char *g = cmd->group ? cmd->group : "";
    bool admin = (cmd->flags & TL_CMD_ADMIN) != 0;
    size_t n = 0;
    if (strcmp(g, "generic") == 0)
        out[n++] = "@keyspace";
    if (cmd->flags & TL_CMD_READONLY)
        out[n++] = "@read";
    if (cmd->flags & TL_CMD_WRITE)
        out[n++] = "@write";
    if (strcmp(g, "string") == 0)
        out[n++] = "@string";
    if (strcmp(g, "hyperloglog") == 0)
        out[n++] = "@hyperloglog";
    if (admin)
        out[n++] = "@admin";
    out[n++] = (cmd->flags & TL_CMD_FAST) ? "@fast" : "@slow";
    if (admin)
        out[n++] = "@dangerous";
    if (strcmp(g, "connection") == 0)
        out[n++] = "@connection";
    if (strcmp(g, "transactions") == 0)
        out[n++] = "@transaction";
    return n;
}

#define TL_MAX_ACL_CATEGORIES 8

static void reply_key_specs(struct tl_client *c, const struct tl_command *cmd)
{
    if (cmd->first_key <= 0) {
        tl_reply_array(c, 0);
        return;
    }
    tl_reply_array(c, 1);
    tl_reply_map(c, 3);
    tl_reply_cstr(c, "flags");
    if (cmd->flags & TL_CMD_WRITE) {
        tl_reply_set(c, 2);
        tl_reply_status(c, "RW");
        tl_reply_status(c, "update");
    } else {
        tl_reply_set(c, 2);
        tl_reply_status(c, "RO");
        tl_reply_status(c, "access");
    }
    tl_reply_cstr(c, "begin_search");
    tl_reply_map(c, 2);
    tl_reply_cstr(c, "type");
    tl_reply_cstr(c, "index");
    tl_reply_cstr(c, "spec");
    tl_reply_map(c, 1);
    tl_reply_cstr(c, "index");
    tl_reply_int(c, cmd->first_key);
    tl_reply_cstr(c, "find_keys");
    tl_reply_map(c, 2);
    tl_reply_cstr(c, "type");
    tl_reply_cstr(c, "range");
    tl_reply_cstr(c, "spec");
    tl_reply_map(c, 3);
    tl_reply_cstr(c, "lastkey");
    tl_reply_int(c, cmd->last_key < 0 ? cmd->last_key : cmd->last_key - cmd->first_key);
    tl_reply_cstr(c, "keystep");
    tl_reply_int(c, cmd->key_step);
    tl_reply_cstr(c, "limit");
    tl_reply_int(c, 0);
}

/* One command as COMMAND INFO shows it (Redis 7: ten fields). */
static void reply_command_info(struct tl_client *c, const struct tl_command *parent,
                               const struct tl_command *cmd)
{
    char name[TL_SUBCOMMAND_NAME_BYTES];
    const char *cats[TL_MAX_ACL_CATEGORIES];
    full_name(name, sizeof name, parent, cmd);
    tl_reply_array(c, 10);
    tl_reply_cstr(c, name);
    tl_reply_int(c, cmd->arity);
    size_t nf = 0;
    for (size_t i = 0; i < sizeof command_flags / sizeof command_flags[0]; i++)
        nf += (cmd->flags & command_flags[i].flag) != 0;
    tl_reply_set(c, nf);
    for (size_t i = 0; i < sizeof command_flags / sizeof command_flags[0]; i++)
        if (cmd->flags & command_flags[i].flag)
            tl_reply_status(c, command_flags[i].name);
    tl_reply_int(c, cmd->first_key);
    tl_reply_int(c, cmd->last_key);
    tl_reply_int(c, cmd->key_step);
    size_t nc = acl_categories(cmd, cats);
    tl_reply_set(c, nc);
    for (size_t i = 0; i < nc; i++)
        tl_reply_status(c, cats[i]);
    tl_reply_set(c, 0); /* tips */
    reply_key_specs(c, cmd);
    tl_reply_array(c, table_len(cmd->subcommands));
    for (size_t i = 0; i < table_len(cmd->subcommands); i++)
        reply_command_info(c, cmd, &cmd->subcommands[i]);
}

/* One command's documentation map, as COMMAND DOCS shows it. */
static void reply_command_docs(struct tl_client *c, const struct tl_command *parent,
                               const struct tl_command *cmd)
{
    struct doc_tree *t = malloc(sizeof *t);
    int args = t ? doc_parse(cmd->args_doc, t) : -1;
    size_t nsubs = table_len(cmd->subcommands);
    tl_reply_map(c, 4 + (args >= 0) + (nsubs > 0));
    tl_reply_cstr(c, "summary");
    tl_reply_cstr(c, cmd->summary ? cmd->summary : "");
    tl_reply_cstr(c, "since");
    tl_reply_cstr(c, cmd->since ? cmd->since : "1.0.0");
    tl_reply_cstr(c, "group");
    tl_reply_cstr(c, cmd->group ? cmd->group : "generic");
    tl_reply_cstr(c, "complexity");
    tl_reply_cstr(c, cmd->complexity ? cmd->complexity : "O(1)");
    if (args >= 0) {
        tl_reply_cstr(c, "arguments");
        reply_doc_args(c, t, args);
    }
    free(t);
    if (nsubs) {
        tl_reply_cstr(c, "subcommands");
        tl_reply_map(c, nsubs);
        for (size_t i = 0; i < nsubs; i++) {
            char name[TL_SUBCOMMAND_NAME_BYTES];
            full_name(name, sizeof name, cmd, &cmd->subcommands[i]);
            tl_reply_cstr(c, name);
            reply_command_docs(c, cmd, &cmd->subcommands[i]);
        }
    }
}

static bool collect_commands(struct tl_client *c, struct cmd_vec *cv)
{
    tl_command_each(cmd_vec_add, cv);
    if (cv->oom) {
        tl_reply_error(c, "ERR out of memory");
        return false;
    }
    return true;
}

static void command_count(struct tl_client *c, struct tl_args *a)
{
    tl_reply_int(c, (int64_t)tl_command_count());
}

static void command_info(struct tl_client *c, struct tl_args *a)
{
    if (a->argc == 2) {
        struct cmd_vec cv = {0};
        if (collect_commands(c, &cv)) {
            tl_reply_array(c, cv.n);
            for (size_t i = 0; i < cv.n; i++)
                reply_command_info(c, NULL, cv.v[i]);
        }
        free(cv.v);
        return;
    }
    tl_reply_array(c, (size_t)(a->argc - 2));
    for (int i = 2; i < a->argc; i++) {
        const struct tl_command *parent, *cmd = find_command(a->argv[i], a->len[i], &parent);
        if (cmd)
            reply_command_info(c, parent, cmd);
        else
            tl_reply_null(c);
    }
}

static void command_all(struct tl_client *c, struct tl_args *a)
{
    struct tl_args none = {.argc = 2, .argv = a->argv, .len = a->len};
    command_info(c, &none);
}

static void command_docs(struct tl_client *c, struct tl_args *a)
{
    struct cmd_vec cv = {0};
    if (a->argc == 2) {
        if (collect_commands(c, &cv)) {
            tl_reply_map(c, cv.n);
            for (size_t i = 0; i < cv.n; i++) {
                tl_reply_cstr(c, cv.v[i]->name);
                reply_command_docs(c, NULL, cv.v[i]);
            }
        }
        free(cv.v);
        return;
    }
    /* Unknown names are left out, so count the known ones first. */
    size_t found = 0;
    for (int i = 2; i < a->argc; i++) {
        const struct tl_command *parent;
        found += find_command(a->argv[i], a->len[i], &parent) != NULL;
    }
    tl_reply_map(c, found);
    for (int i = 2; i < a->argc; i++) {
        const struct tl_command *parent, *cmd = find_command(a->argv[i], a->len[i], &parent);
        if (!cmd)
            continue;
        char name[TL_SUBCOMMAND_NAME_BYTES];
        full_name(name, sizeof name, parent, cmd);
        tl_reply_cstr(c, name);
        reply_command_docs(c, parent, cmd);
    }
}

/* Whether a command (or subcommand) passes COMMAND LIST's filter. */
struct list_filter {
    int kind; /* 0 none, 1 pattern, 2 ACL category, 3 module */
    const char *arg;
    size_t arg_len;
};

static bool list_filter_pass(const struct list_filter *f, const char *name,
                             const struct tl_command *cmd)
{
    const char *cats[TL_MAX_ACL_CATEGORIES];
    switch (f->kind) {
    case 1:
        return tl_glob_match(f->arg, f->arg_len, name, strlen(name), true);
    case 2: {
        size_t n = acl_categories(cmd, cats);
        for (size_t i = 0; i < n; i++)
            if (tl_arg_eq(f->arg, f->arg_len, cats[i] + 1))
                return true;
        return false;
    }
    case 3:
        return false; /* Tally has no modules */
    default:
        return true;
    }
}

/* COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: the names of every
 * command and subcommand that passes. */
static void command_list(struct tl_client *c, struct tl_args *a)
{
    struct list_filter f = {0};
    struct cmd_vec cv = {0};
    struct tl_buf names = {0}; /* NUL-separated */
    size_t count = 0;
    if (a->argc == 5 && tl_arg_eq(a->argv[2], a->len[2], "FILTERBY")) {
        if (tl_arg_eq(a->argv[3], a->len[3], "PATTERN"))
            f.kind = 1;
        else if (tl_arg_eq(a->argv[3], a->len[3], "ACLCAT"))
            f.kind = 2;
        else if (tl_arg_eq(a->argv[3], a->len[3], "MODULE"))
            f.kind = 3;
        f.arg = a->argv[4];
        f.arg_len = a->len[4];
    }
    if (a->argc != 2 && f.kind == 0) {
        tl_reply_syntax_error(c);
        return;
    }
    if (!collect_commands(c, &cv))
        goto cleanup;
    for (size_t i = 0; i < cv.n; i++) {
        const struct tl_command *p = cv.v[i];
        if (list_filter_pass(&f, p->name, p)) {
            tl_buf_append(&names, p->name, strlen(p->name) + 1);
            count++;
        }
        for (size_t j = 0; j < table_len(p->subcommands); j++) {
            char name[TL_SUBCOMMAND_NAME_BYTES];
            full_name(name, sizeof name, p, &p->subcommands[j]);
            if (list_filter_pass(&f, name, &p->subcommands[j])) {
                tl_buf_append(&names, name, strlen(name) + 1);
                count++;
            }
        }
    }
    tl_reply_array(c, count);
    for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1)
        tl_reply_cstr(c, names.data + off);
cleanup:
    free(cv.v);
    tl_buf_free(&names);
}

/* COMMAND GETKEYS command arg...: the keys by the command's key positions. */
static void command_getkeys(struct tl_client *c, struct tl_args *a)
{
    const struct tl_command *cmd = tl_command_lookup(a->argv[2], a->len[2]);
    int argc = a->argc - 2; /* the inner command's arguments, its name included */
    if (cmd && cmd->subcommands && argc >= 2) {
        const struct tl_command *parent;
        char joined[TL_SUBCOMMAND_NAME_BYTES];
        int n = snprintf(joined, sizeof joined, "%s|%s", cmd->name, a->argv[3]);
        if (n > 0 && (size_t)n < sizeof joined)
            cmd = find_command(joined, (size_t)n, &parent);
    }
    if (!cmd) {
        tl_reply_error(c, "ERR Invalid command specified");
        return;
    }
    if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
        tl_reply_error(c, "ERR Invalid number of arguments specified for command");
        return;
    }
    if (cmd->first_key <= 0) {
        tl_reply_error(c, "ERR The command has no key arguments");
        return;
    }
    int last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
    int step = cmd->key_step > 0 ? cmd->key_step : 1;
    if (last >= argc)
        last = argc - 1;
    size_t n = 0;
    for (int i = cmd->first_key; i <= last; i += step)
        n++;
    tl_reply_array(c, n);
    for (int i = cmd->first_key; i <= last; i += step)
        tl_reply_bulk(c, a->argv[2 + i], a->len[2 + i]);
}

static void command_help(struct tl_client *c, struct tl_args *a)
{
    static const char *const lines[] = {
        "(no subcommand)",
        "    Every command with its arity, flags and key positions.",
        "COUNT",
        "    The number of commands.",
        "LIST [FILTERBY (MODULE <module>|ACLCAT <category>|PATTERN <pattern>)]",
        "    The names of the commands and subcommands, or of those passing the filter.",
        "INFO [<command-name> ...]",
        "    The arity, flags and key positions of each command named (all without names).",
        "DOCS [<command-name> ...]",
        "    The summary, complexity and arguments of each command named (all without names).",
        "GETKEYS <full-command>",
        "    The keys a full command would use.",
        NULL,
    };
    reply_help(c, "COMMAND", lines);
}

static const struct tl_command command_subcommands[] = {
    {"count", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_count, "server", "2.8.13",
     "Returns a count of commands.", "O(1)", "", NULL},
    {"info", -2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_info, "server", "2.8.13",
     "Returns information about one, multiple or all commands.",
     "O(N) where N is the number of commands to look up", "[command-name [command-name ...]]",
     NULL},
    {"docs", -2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_docs, "server", "7.0.0",
     "Returns documentary information about one, multiple or all commands.",
     "O(N) where N is the number of commands to look up", "[command-name [command-name ...]]",
     NULL},
    {"list", -2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_list, "server", "7.0.0",
     "Returns a list of command names.", "O(N) where N is the total number of commands",
     "[FILTERBY <MODULE module-name|ACLCAT category|PATTERN pattern>]", NULL},
    {"getkeys", -4, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_getkeys, "server", "2.8.13",
     "Extracts the key names from an arbitrary command.",
     "O(N) where N is the number of arguments to the command", "command [arg [arg ...]]", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, command_help, "server", "5.0.0",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_command(struct tl_client *c, struct tl_args *a)
{
    if (a->argc == 1)
        command_all(c, a);
    else
        run_subcommand(c, a, "command", command_subcommands);
}

/* ---- SLOWLOG --------------------------------------------------------------------------------- */

/* SLOWLOG GET [count]: newest first; -1 means all. */
static void slowlog_get(struct tl_client *c, struct tl_args *a)
{
    int64_t want = TL_SLOWLOG_DEFAULT_GET;
    if (a->argc == 3 && (!tl_parse_int(a->argv[2], a->len[2], &want) || want < -1)) {
        tl_reply_error(c, "ERR count should be greater than or equal to -1");
        return;
    }
    if (a->argc > 3) {
        tl_reply_error(c, "ERR unknown subcommand or wrong number of arguments for 'GET'. Try "
                          "SLOWLOG HELP.");
        return;
    }
    struct tl_server *s = tl_srv;
    pthread_mutex_lock(&s->slowlog_lock);
    size_t n = s->slowlog_len;
    if (want >= 0 && (uint64_t)want < n)
        n = (size_t)want;
    tl_reply_array(c, n);
    for (size_t i = 0; i < n; i++) {
        const struct tl_slowlog_entry *e =
            &s->slowlog[(s->slowlog_head + s->slowlog_cap - 1 - i) % s->slowlog_cap];
        tl_reply_array(c, 6);
        tl_reply_int(c, (int64_t)e->id);
        tl_reply_int(c, e->time_s);
        tl_reply_int(c, e->duration_us);
        tl_reply_array(c, (size_t)e->argc);
        for (int j = 0; j < e->argc; j++)
            tl_reply_bulk(c, e->argv[j], e->len[j]);
        tl_reply_cstr(c, e->addr);
        tl_reply_cstr(c, e->name);
    }
    pthread_mutex_unlock(&s->slowlog_lock);
}

static void slowlog_len(struct tl_client *c, struct tl_args *a)
{
    pthread_mutex_lock(&tl_srv->slowlog_lock);
    size_t n = tl_srv->slowlog_len;
    pthread_mutex_unlock(&tl_srv->slowlog_lock);
    tl_reply_int(c, (int64_t)n);
}

/* Frees every entry; the ring stays allocated (server.h describes it). */
static void slowlog_reset(struct tl_client *c, struct tl_args *a)
{
    struct tl_server *s = tl_srv;
    pthread_mutex_lock(&s->slowlog_lock);
    for (size_t i = 0; i < s->slowlog_len; i++) {
        struct tl_slowlog_entry *e =
            &s->slowlog[(s->slowlog_head + s->slowlog_cap - 1 - i) % s->slowlog_cap];
        free(e->argv);
        e->argv = NULL;
        e->len = NULL;
        e->argc = 0;
    }
    s->slowlog_len = 0;
    s->slowlog_head = 0;
    pthread_mutex_unlock(&s->slowlog_lock);
    tl_reply_ok(c);
}

static void slowlog_help(struct tl_client *c, struct tl_args *a)
{
    static const char *const lines[] = {
        "GET [<count>]",
        "    The <count> newest entries (10 by default, -1 for all). Each entry holds an id,",
        "    the unix time, the duration in microseconds, the arguments (at most 32, each",
        "    cut to 128 bytes), the client's address and the client's name.",
        "LEN",
        "    The number of entries.",
        "RESET",
        "    Removes every entry.",
        NULL,
    };
    reply_help(c, "SLOWLOG", lines);
}

static const struct tl_command slowlog_subcommands[] = {
    {"get", -2, TL_CMD_ADMIN | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, slowlog_get, "server",
     "2.2.12", "Returns the slow log's entries.", "O(N) where N is the number of entries returned",
     "[count]", NULL},
    {"len", 2, TL_CMD_ADMIN | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, slowlog_len, "server",
     "2.2.12", "Returns the number of entries in the slow log.", "O(1)", "", NULL},
    {"reset", 2, TL_CMD_ADMIN | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, slowlog_reset, "server",
     "2.2.12", "Clears all entries from the slow log.",
     "O(N) where N is the number of entries in the slowlog", "", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, slowlog_help, "server", "6.2.0",
     "Show helpful text about the different subcommands", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_slowlog(struct tl_client *c, struct tl_args *a)
{
    run_subcommand(c, a, "slowlog", slowlog_subcommands);
}

/* ---- server commands ------------------------------------------------------------------------- */

static void cmd_time(struct tl_client *c, struct tl_args *a)
{
    struct timeval tv;
    char s[32], us[16];
    gettimeofday(&tv, NULL);
    snprintf(s, sizeof s, "%lld", (long long)tv.tv_sec);
    snprintf(us, sizeof us, "%ld", (long)tv.tv_usec);
    tl_reply_array(c, 2);
    tl_reply_cstr(c, s);
    tl_reply_cstr(c, us);
}

/* SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: Tally has nothing to save (the WAL holds every
 * write) and nothing to wait for, so the options change nothing and ABORT finds nothing to
 * abort. On success there is no reply: the connection closes as the server stops. */
static void cmd_shutdown(struct tl_client *c, struct tl_args *a)
{
    bool abort_req = false, save = false, nosave = false, other = false;
    for (int i = 1; i < a->argc; i++) {
        if (tl_arg_eq(a->argv[i], a->len[i], "NOSAVE"))
            nosave = true;
        else if (tl_arg_eq(a->argv[i], a->len[i], "SAVE"))
            save = true;
        else if (tl_arg_eq(a->argv[i], a->len[i], "NOW") ||
                 tl_arg_eq(a->argv[i], a->len[i], "FORCE"))
            other = true;
        else if (tl_arg_eq(a->argv[i], a->len[i], "ABORT"))
            abort_req = true;
        else {
            tl_reply_syntax_error(c);
            return;
        }
    }
    if ((save && nosave) || (abort_req && (save || nosave || other))) {
        tl_reply_syntax_error(c);
        return;
    }
    if (abort_req) {
        tl_reply_error(c, "ERR No shutdown in progress.");
        return;
    }
    tl_log(TL_LOG_WARNING, "SHUTDOWN requested by client id=%" PRIu64 " addr=%s", c->id, c->addr);
    tl_server_request_shutdown();
    c->close_after_reply = true;
}

/* LASTSAVE: Tally never takes snapshots; every write is durable through the WAL as it happens.
 * It answers the server's start time, the moment its data was last known to be all on disk. */
static void cmd_lastsave(struct tl_client *c, struct tl_args *a)
{
    tl_reply_int(c, tl_srv->start_ms / 1000);
}

static void cmd_save(struct tl_client *c, struct tl_args *a)
{
    tl_reply_error(c, TL_ERR_NO_SAVE);
}

/* ---- the table ------------------------------------------------------------------------------- */

#define CONN_FLAGS (TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST)

const struct tl_command tl_commands_server[] = {
    {"ping", -1, TL_CMD_FAST, 0, 0, 0, cmd_ping, "connection", "1.0.0",
     "Returns the server's liveliness response.", "O(1)", "[message]", NULL},
    {"echo", 2, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_echo, "connection",
     "1.0.0", "Returns the given string.", "O(1)", "message", NULL},
    {"hello", -1, CONN_FLAGS | TL_CMD_NOAUTH, 0, 0, 0, cmd_hello, "connection", "6.0.0",
     "Handshakes with the server, choosing the protocol version.", "O(1)",
     "[protover [AUTH username password] [SETNAME clientname]]", NULL},
    {"auth", -2, CONN_FLAGS | TL_CMD_NOAUTH, 0, 0, 0, cmd_auth, "connection", "1.0.0",
     "Authenticates the connection.",
     "O(N) where N is the number of passwords defined for the user", "[username] password", NULL},
    {"quit", -1, CONN_FLAGS | TL_CMD_NOAUTH | TL_CMD_NOMULTI, 0, 0, 0, cmd_quit, "connection",
     "1.0.0", "Closes the connection.", "O(1)", "", NULL},
    {"select", 2, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_select, "connection",
     "1.0.0", "Changes the selected database.", "O(1)", "index", NULL},
    {"reset", 1, CONN_FLAGS | TL_CMD_NOAUTH | TL_CMD_NOMULTI, 0, 0, 0, cmd_reset, "connection",
     "6.2.0", "Resets the connection.", "O(1)", "", NULL},
    {"client", -2, 0, 0, 0, 0, cmd_client, "connection", "2.4.0",
     "A container for client connection commands.", "Depends on subcommand.", "",
     client_subcommands},
    {"info", -1, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, cmd_info, "server", "1.0.0",
     "Returns information and statistics about the server.",
     "O(1), and O(keys) for the keyspace section", "[section [section ...]]", NULL},
    {"config", -2, 0, 0, 0, 0, cmd_config, "server", "2.0.0",
     "A container for server configuration commands.", "Depends on subcommand.", "",
     config_subcommands},
    {"command", -1, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, cmd_command, "server", "2.8.13",
     "Returns detailed information about all commands.",
     "O(N) where N is the total number of commands", "", command_subcommands},
    {"time", 1, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_time, "server", "2.6.0",
     "Returns the server time.", "O(1)", "", NULL},
    {"shutdown", -1, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     cmd_shutdown, "server", "1.0.0", "Stops the server: the WAL is synced, the files closed.",
     "O(1)", "[NOSAVE|SAVE] [NOW] [FORCE] [ABORT]", NULL},
    {"slowlog", -2, 0, 0, 0, 0, cmd_slowlog, "server", "2.2.12",
     "A container for slow log commands.", "Depends on subcommand.", "", slowlog_subcommands},
    {"lastsave", 1, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_lastsave, "server",
     "1.0.0",
     "Returns the server's start time: Tally takes no snapshots, every write goes to its WAL.",
     "O(1)", "", NULL},
    {"save", 1, TL_CMD_ADMIN | TL_CMD_NOSCRIPT, 0, 0, 0, cmd_save, "server", "1.0.0",
     "Not offered: Tally persists every write through its WAL.", "O(1)", "", NULL},
    {"bgsave", -1, TL_CMD_ADMIN | TL_CMD_NOSCRIPT, 0, 0, 0, cmd_save, "server", "1.0.0",
     "Not offered: Tally persists every write through its WAL.", "O(1)", "[SCHEDULE]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
