/*
 * commands_introspect.c - the COMMAND command and its subcommands COUNT, INFO, DOCS, LIST,
 * GETKEYS and HELP: what clients (redis-cli's hints, client libraries' key routing) learn about
 * the commands in the command table.
 *
 * Replies follow Redis 7.0 byte for byte (the shapes of COMMAND INFO and COMMAND DOCS).
 *
 * COMMAND DOCS builds each command's argument tree from its args_doc text, the syntax line that
 * redis-cli shows as a hint: WORD is a token, word an argument, [ ] optional, < > a required
 * group, a|b alternatives, and "x [x ...]" repetition. redis-cli 7 rebuilds its hints from that
 * tree, so a command whose hint renders the same as its args_doc is documented correctly.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define TL_DOC_MAX_NODES  128 /* argument tree nodes of one command's args_doc */
#define TL_DOC_MAX_SEQ    32  /* arguments in one sequence of args_doc */
#define TL_DOC_MAX_DEPTH  8   /* nesting of [ ] and < > in args_doc */
#define TL_DOC_NAME_BYTES 48  /* an argument's name or token */

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
                tl_lower_copy(lower, sizeof lower, word, strlen(word));
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
        tl_lower_copy(part, sizeof part, alt->token[0] ? alt->token : alt->name,
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
    {TL_CMD_WRITE, "write"},         {TL_CMD_READONLY, "readonly"}, {TL_CMD_ADMIN, "admin"},
    {TL_CMD_PUBSUB, "pubsub"},       {TL_CMD_NOSCRIPT, "noscript"}, {TL_CMD_LOADING, "loading"},
    {TL_CMD_STALE, "stale"},         {TL_CMD_FAST, "fast"},         {TL_CMD_NOAUTH, "no_auth"},
    {TL_CMD_DENY_MULTI, "no_multi"},
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
    tl_reply_help(c, "COMMAND", lines);
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
        tl_run_subcommand(c, a, "command", command_subcommands);
}

/* ---- the table ------------------------------------------------------------------------------- */

const struct tl_command tl_commands_introspect[] = {
    {"command", -1, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, cmd_command, "server", "2.8.13",
     "Returns detailed information about all commands.",
     "O(N) where N is the total number of commands", "", command_subcommands},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
