/*
 * commands_server.c - the connection and server commands: PING, ECHO, HELLO, AUTH, QUIT, SELECT,
 * RESET, CLIENT, CONFIG, TIME, SHUTDOWN, SLOWLOG, LASTSAVE, SAVE and BGSAVE. INFO is in info.c,
 * COMMAND in commands_introspect.c.
 *
 * Replies follow Redis 7.0 byte for byte where a client could tell the difference (the texts of
 * errors, the shape of HELLO, CLIENT LIST's line format). Tally answers as a Redis 7.0.0 would in
 * "version" fields, because clients compare that number to decide which commands exist, and
 * reports its own version beside it.
 *
 * Container commands (CLIENT, CONFIG, COMMAND, SLOWLOG) keep their subcommands in tables that
 * COMMAND shows. tl_dispatch finds the subcommand and checks its arity; the container's own
 * handler does the same (tl_run_subcommand) if it is ever called with one, and otherwise answers
 * the command without a subcommand (COMMAND alone lists every command).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#define TL_ERR_NO_PASSWORD                                                                         \
    "ERR AUTH <password> called without any password configured for the default user. Are you "    \
    "sure your configuration is correct?"
#define TL_ERR_WRONGPASS   "WRONGPASS invalid username-password pair or user is disabled."
#define TL_ERR_CLIENT_NAME "ERR Client names cannot contain spaces, newlines or special characters."
#define TL_ERR_NOAUTH_HELLO                                                                        \
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "      \
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "        \
    "protocol version at the same time"
#define TL_ERR_NO_SAVE                                                                             \
    "ERR Tally persists every write through its WAL; use tallyctl checkpoint for a copy"

#define TL_SLOWLOG_DEFAULT_GET 10 /* SLOWLOG GET without a count, as Redis */

/* ---- shared helpers -------------------------------------------------------------------------- */

void tl_run_subcommand(struct tl_client *c, struct tl_args *a, const char *parent,
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

void tl_reply_help(struct tl_client *c, const char *cmd, const char *const *lines)
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

void tl_lower_copy(char *dst, size_t cap, const char *src, size_t len)
{
    size_t i;
    for (i = 0; i < len && i + 1 < cap; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
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

/* Redis's seven pairs in Redis's order, then Tally's own: clients read the RESP2 reply by
 * position (node-redis 4 takes proto from element 5, id from 7, ...), so a pair inserted among
 * Redis's shifts every later field. */
static void reply_hello_map(struct tl_client *c)
{
    tl_reply_map(c, 8);
    tl_reply_cstr(c, "server");
    tl_reply_cstr(c, "tally");
    tl_reply_cstr(c, "version");
    tl_reply_cstr(c, TL_REDIS_COMPAT_VERSION);
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
    tl_reply_cstr(c, "tally_version");
    tl_reply_cstr(c, TL_VERSION_STRING);
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

/* SELECT index: Redis reads the index as a C int: text that is no 64-bit integer is "not an
 * integer", an integer past int's range names that range, and one within it but not a
 * database is "out of range". */
static void cmd_select(struct tl_client *c, struct tl_args *a)
{
    int64_t db;
    if (!tl_parse_int(a->argv[1], a->len[1], &db)) {
        tl_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    if (db < INT_MIN || db > INT_MAX) {
        tl_reply_errorf(c, "ERR value is out of range, value must between %d and %d", INT_MIN,
                        INT_MAX);
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
    c->reply_off = false; /* as Redis: a SKIP in force still drops RESET's own reply */
    c->reply_skip_next = false;
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

/* CLIENT REPLY ON|OFF|SKIP. OFF and SKIP answer nothing, except inside EXEC, whose array
 * needs an element for each command (they take effect after EXEC's reply: tl_dispatch). */
static void client_reply(struct tl_client *c, struct tl_args *a)
{
    if (tl_arg_eq(a->argv[2], a->len[2], "on")) {
        c->reply_off = false;
        c->reply_skip_next = false;
        tl_reply_ok(c);
    } else if (tl_arg_eq(a->argv[2], a->len[2], "off")) {
        c->reply_off = true;
        if (c->in_exec)
            tl_reply_ok(c);
    } else if (tl_arg_eq(a->argv[2], a->len[2], "skip")) {
        if (!c->reply_off)
            c->reply_skip_next = true;
        if (c->in_exec)
            tl_reply_ok(c);
    } else {
        tl_reply_syntax_error(c);
    }
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
        "REPLY (ON|OFF|SKIP)",
        "    Replies to every command (ON), to none (OFF), or to all but the next one (SKIP).",
        "SETINFO (LIB-NAME|LIB-VER) <value>",
        "    Accepted for compatibility; Tally does not record it.",
        "NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
        "    Accepted for compatibility; Tally neither evicts clients nor tracks key access.",
        NULL,
    };
    tl_reply_help(c, "CLIENT", lines);
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
    {"reply", 3, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, client_reply,
     "connection", "3.2.0", "Instructs the server whether to reply to commands.", "O(1)",
     "ON|OFF|SKIP", NULL},
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
    tl_run_subcommand(c, a, "client", client_subcommands);
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
        tl_lower_copy(names[i], len + 1, a->argv[2 + 2 * i], len);
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
    tl_cmdstat_reset();
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
    tl_reply_help(c, "CONFIG", lines);
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
    tl_run_subcommand(c, a, "config", config_subcommands);
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
    tl_reply_help(c, "SLOWLOG", lines);
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
    tl_run_subcommand(c, a, "slowlog", slowlog_subcommands);
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
    {"config", -2, 0, 0, 0, 0, cmd_config, "server", "2.0.0",
     "A container for server configuration commands.", "Depends on subcommand.", "",
     config_subcommands},
    {"time", 1, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_time, "server", "2.6.0",
     "Returns the server time.", "O(1)", "", NULL},
    {"shutdown", -1,
     TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_DENY_MULTI, 0, 0, 0,
     cmd_shutdown, "server", "1.0.0", "Stops the server: the WAL is synced, the files closed.",
     "O(1)", "[NOSAVE|SAVE] [NOW] [FORCE] [ABORT]", NULL},
    {"slowlog", -2, 0, 0, 0, 0, cmd_slowlog, "server", "2.2.12",
     "A container for slow log commands.", "Depends on subcommand.", "", slowlog_subcommands},
    {"lastsave", 1, TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0, cmd_lastsave, "server",
     "1.0.0",
     "Returns the server's start time: Tally takes no snapshots, every write goes to its WAL.",
     "O(1)", "", NULL},
    {"save", 1, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_DENY_MULTI, 0, 0, 0, cmd_save, "server",
     "1.0.0", "Not offered: Tally persists every write through its WAL.", "O(1)", "", NULL},
    {"bgsave", -1, TL_CMD_ADMIN | TL_CMD_NOSCRIPT, 0, 0, 0, cmd_save, "server", "1.0.0",
     "Not offered: Tally persists every write through its WAL.", "O(1)", "[SCHEDULE]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
