/*
 * commands.c - the command table, dispatch, MULTI/EXEC/DISCARD and the slow log.
 *
 * Each group of commands has its own table (tl_commands_string, _hll, _keys, _server, _info,
 * _introspect and _transactions, defined here). At first use they are gathered into one
 * open-addressing hash keyed by the lower-case name, so a lookup is a hash of the name and
 * usually one compare.
 *
 * tl_dispatch follows Redis 7's order of checks: unknown command or subcommand, arity,
 * authentication, then MULTI queueing (or refusal, for a command Redis does not allow in a
 * transaction), then the handler. A rejection inside MULTI also marks the transaction failed,
 * so EXEC answers EXECABORT.
 *
 * EXEC atomicity. A transaction's commands must run with no other client's command between
 * them. A pthread rwlock taken shared by every command does that, but its counter is one
 * cache line written by every worker on every command: measured on the 2-core build machine
 * it added about 12 ns per command on one thread and about 20-100 ns when two threads run
 * commands at once (the line moves between cores). Instead each thread that runs commands
 * owns a flag on its own cache line. A command sets its thread's flag, then checks
 * exec_pending; EXEC takes tl_srv->exec_lock exclusive, sets exec_pending, then waits until
 * every other thread's flag is clear. All four accesses are sequentially consistent, so at
 * least one side sees the other's store: either the command backs off or EXEC waits for it to
 * finish. A command that sees exec_pending clears its flag and waits on exec_lock shared,
 * which EXEC holds until it is done. The common path costs one exchange and one load on a line
 * no other thread writes (about 5 ns, the same with two threads). A command flagged
 * TL_CMD_EXCLUSIVE (a multi-key write such as MSET) runs alone the same way, as a transaction
 * of one command; inside EXEC it just runs, the exclusion being held already.
 *
 * The slow log times every command; one at or over slowlog-log-slower-than microseconds is
 * copied (at most 32 arguments of at most 128 bytes each, as Redis shows them) into the ring
 * described in server.h.
 */
#include "server.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The index holds at most TL_CMD_INDEX_SLOTS / 2 commands, so probes stay short. */
#define TL_CMD_INDEX_SLOTS 1024
#define TL_CMD_MAX         (TL_CMD_INDEX_SLOTS / 2)
/* No command name is longer; longer input is unknown without hashing it. */
#define TL_CMD_NAME_MAX 64
_Static_assert(TL_CMD_FULL_NAME_BYTES >= TL_CMD_NAME_MAX * 2 + 2, "names of subcommands");

/* Redis's limits on what error replies and the slow log show of arguments. */
#define TL_ERR_SHOW_BYTES       128
#define TL_SLOWLOG_SHOW_BYTES   128
#define TL_SLOWLOG_SUFFIX_BYTES 48 /* "... (N more bytes)" */

/* EXEC spins this many times on a busy thread's flag before it starts yielding the CPU. */
#define TL_EXEC_SPINS 1000

#define TL_CACHE_LINE 64

struct tl_queued_cmd {
    const struct tl_command *cmd; /* as named in errors and the slow log */
    tl_cmd_fn fn;
    struct tl_args args;
    size_t queued_bytes; /* of the whole queue up to and including this command */
};

static void cmd_multi(struct tl_client *c, struct tl_args *a);
static void cmd_exec(struct tl_client *c, struct tl_args *a);
static void cmd_discard(struct tl_client *c, struct tl_args *a);
static void cmd_watch(struct tl_client *c, struct tl_args *a);
static void cmd_unwatch(struct tl_client *c, struct tl_args *a);

#define TL_TX_FLAGS (TL_CMD_NOMULTI | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE)

const struct tl_command tl_commands_transactions[] = {
    {"multi", 1, TL_TX_FLAGS | TL_CMD_FAST, 0, 0, 0, cmd_multi, "transactions", "1.2.0",
     "Starts a transaction.", "O(1)", "", NULL},
    {"exec", 1, TL_TX_FLAGS, 0, 0, 0, cmd_exec, "transactions", "1.2.0",
     "Executes all commands in a transaction.", "Depends on commands in the transaction", "", NULL},
    {"discard", 1, TL_TX_FLAGS | TL_CMD_FAST, 0, 0, 0, cmd_discard, "transactions", "2.0.0",
     "Discards a transaction.", "O(N), when N is the number of queued commands", "", NULL},
    {"watch", -2, TL_TX_FLAGS | TL_CMD_FAST, 1, -1, 1, cmd_watch, "transactions", "2.2.0",
     "Monitors changes to keys to determine the execution of a transaction.", "O(1) for every key.",
     "key [key ...]", NULL},
    {"unwatch", 1, TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE | TL_CMD_FAST, 0, 0, 0,
     cmd_unwatch, "transactions", "2.2.0", "Forgets about watched keys of a transaction.", "O(N)",
     "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

/* ---- the index ----------------------------------------------------------------------------- */

static const struct tl_command *cmd_index[TL_CMD_INDEX_SLOTS];
static const struct tl_command *cmd_list[TL_CMD_MAX];
static size_t cmd_count;
static pthread_once_t cmd_once = PTHREAD_ONCE_INIT;

static inline unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* FNV-1a over the lower-cased bytes. */
static inline uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ascii_lower((unsigned char)s[i])) * 16777619u;
    return h;
}

/* Whether s (n bytes, any case) is the lower-case name. */
static inline bool name_eq(const char *s, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (name[i] == '\0' || ascii_lower((unsigned char)s[i]) != (unsigned char)name[i])
            return false;
    return name[n] == '\0';
}

static const struct tl_command *index_find(const char *s, size_t n)
{
    uint32_t i = name_hash(s, n) & (TL_CMD_INDEX_SLOTS - 1);
    while (cmd_index[i]) {
        if (name_eq(s, n, cmd_index[i]->name))
            return cmd_index[i];
        i = (i + 1) & (TL_CMD_INDEX_SLOTS - 1);
    }
    return NULL;
}

static void index_add_table(const struct tl_command *t)
{
    for (; t->name; t++) {
        size_t n = strlen(t->name);
        if (n > TL_CMD_NAME_MAX || cmd_count == TL_CMD_MAX) {
            tl_log(TL_LOG_WARNING, "command table: '%s' not added (name too long or table full)",
                   t->name);
            continue;
        }
        if (index_find(t->name, n)) {
            tl_log(TL_LOG_WARNING, "command table: '%s' is defined twice; the first is used",
                   t->name);
            continue;
        }
        uint32_t i = name_hash(t->name, n) & (TL_CMD_INDEX_SLOTS - 1);
        while (cmd_index[i])
            i = (i + 1) & (TL_CMD_INDEX_SLOTS - 1);
        cmd_index[i] = t;
        cmd_list[cmd_count++] = t;
    }
}

static void slots_init(void);
static void stats_build(void);

static void index_build(void)
{
    index_add_table(tl_commands_string);
    index_add_table(tl_commands_keys);
    index_add_table(tl_commands_hll);
    index_add_table(tl_commands_window);
    index_add_table(tl_commands_throttle);
    index_add_table(tl_commands_admin);
    index_add_table(tl_commands_server);
    index_add_table(tl_commands_info);
    index_add_table(tl_commands_introspect);
    index_add_table(tl_commands_transactions);
    index_add_table(tl_commands_latency);
    slots_init();
    stats_build();
}

const struct tl_command *tl_command_lookup(const char *name, size_t len)
{
    pthread_once(&cmd_once, index_build);
    if (len == 0 || len > TL_CMD_NAME_MAX)
        return NULL;
    return index_find(name, len);
}

void tl_command_each(void (*fn)(void *arg, const struct tl_command *cmd), void *arg)
{
    pthread_once(&cmd_once, index_build);
    for (size_t i = 0; i < cmd_count; i++)
        fn(arg, cmd_list[i]);
}

size_t tl_command_count(void)
{
    pthread_once(&cmd_once, index_build);
    return cmd_count;
}

/* A subcommand's own name: "count" for an entry named "count" or "command|count". */
static const char *sub_short_name(const char *name)
{
    const char *bar = strchr(name, '|');
    return bar ? bar + 1 : name;
}

static const struct tl_command *find_subcommand(const struct tl_command *parent, const char *s,
                                                size_t n)
{
    for (const struct tl_command *sub = parent->subcommands; sub->name; sub++)
        if (name_eq(s, n, sub_short_name(sub->name)))
            return sub;
    return NULL;
}

/* "parent|sub" as Redis names a subcommand in errors and CLIENT LIST. */
static void full_name(char *buf, size_t cap, const struct tl_command *parent,
                      const struct tl_command *cmd)
{
    if (cmd == parent || strchr(cmd->name, '|'))
        snprintf(buf, cap, "%s", cmd->name);
    else
        snprintf(buf, cap, "%s|%s", parent->name, cmd->name);
}

/* ---- statistics slots (cmdstats.c counts in them) ------------------------------------------- */

#define TL_CMD_STAT_MAX   (TL_CMD_MAX * 2) /* commands and subcommands */
#define TL_CMD_STAT_SLOTS (TL_CMD_STAT_MAX * 2)

static const struct tl_command *stat_cmd[TL_CMD_STAT_MAX], *stat_parent[TL_CMD_STAT_MAX];
static size_t stat_count;
static int stat_index[TL_CMD_STAT_SLOTS]; /* by the command's address: its slot + 1, 0 empty */

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 32);
}

static void stat_add(const struct tl_command *cmd, const struct tl_command *parent)
{
    if (stat_count == TL_CMD_STAT_MAX)
        return; /* not counted: TL_CMD_MAX bounds the tables well below */
    uint32_t i = ptr_hash(cmd) & (TL_CMD_STAT_SLOTS - 1);
    while (stat_index[i])
        i = (i + 1) & (TL_CMD_STAT_SLOTS - 1);
    stat_index[i] = (int)stat_count + 1;
    stat_cmd[stat_count] = cmd;
    stat_parent[stat_count] = parent;
    stat_count++;
}

static void stats_build(void)
{
    for (size_t k = 0; k < cmd_count; k++) {
        stat_add(cmd_list[k], cmd_list[k]);
        for (const struct tl_command *sub = cmd_list[k]->subcommands; sub && sub->name; sub++)
            stat_add(sub, cmd_list[k]);
    }
}

size_t tl_command_stat_count(void)
{
    pthread_once(&cmd_once, index_build);
    return stat_count;
}

int tl_command_stat_id(const struct tl_command *cmd)
{
    pthread_once(&cmd_once, index_build);
    for (uint32_t i = ptr_hash(cmd) & (TL_CMD_STAT_SLOTS - 1); stat_index[i];
         i = (i + 1) & (TL_CMD_STAT_SLOTS - 1))
        if (stat_cmd[stat_index[i] - 1] == cmd)
            return stat_index[i] - 1;
    return -1;
}

int tl_command_stat_parent(int id)
{
    return stat_parent[id] == stat_cmd[id] ? -1 : tl_command_stat_id(stat_parent[id]);
}

void tl_command_stat_name(int id, char *buf, size_t cap)
{
    full_name(buf, cap, stat_parent[id], stat_cmd[id]);
}

int tl_command_stat_find(const char *name, size_t len)
{
    const char *bar = memchr(name, '|', len);
    size_t plen = bar ? (size_t)(bar - name) : len;
    const struct tl_command *cmd = tl_command_lookup(name, plen);
    if (cmd && bar)
        cmd = cmd->subcommands ? find_subcommand(cmd, bar + 1, len - plen - 1) : NULL;
    return cmd ? tl_command_stat_id(cmd) : -1;
}

/* ---- errors every command shares ----------------------------------------------------------- */

void tl_reply_wrong_arity(struct tl_client *c, const char *cmd_name)
{
    char lower[TL_CMD_NAME_MAX * 2 + 2];
    size_t n = strnlen(cmd_name, sizeof lower - 1);
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)ascii_lower((unsigned char)cmd_name[i]);
    lower[n] = '\0';
    tl_reply_errorf(c, "ERR wrong number of arguments for '%s' command", lower);
}

void tl_reply_syntax_error(struct tl_client *c)
{
    tl_reply_error(c, "ERR syntax error");
}

void tl_reply_engine_error(struct tl_client *c, int rc)
{
    /* By the code, not the text: the engine's messages name the key and may change. */
    switch (rc) {
    case TL_EOVERFLOW:
        tl_reply_error(c, "ERR increment or decrement would overflow");
        return;
    case TL_ENOTINT:
        tl_reply_error(c, "ERR value is not an integer or out of range");
        return;
    case TL_ENOTFLOAT:
        tl_reply_error(c, "ERR value is not a valid float");
        return;
    case TL_ENANINF:
        tl_reply_error(c, "ERR increment would produce NaN or Infinity");
        return;
    case TL_EWRONGTYPE:
        tl_reply_error(c, TL_WRONGTYPE_ERR);
        return;
    case TL_ETOOBIG:
        /* Keys are checked by tl_dbkey_make before they reach the engine, so a value is over
         * its limit: Redis's text, naming Tally's setting. */
        tl_reply_error(c, "ERR string exceeds maximum allowed size (max-value-bytes)");
        return;
    case TL_EKEYTOOLONG:
        tl_reply_errorf(c, "ERR key exceeds maximum allowed size (%d bytes)",
                        TL_MAX_USER_KEY_BYTES);
        return;
    default:
        break;
    }
    const char *msg = tl_last_error();
    tl_reply_errorf(c, "ERR %s", msg[0] ? msg : tl_strerror(rc));
}

bool tl_arg_int(struct tl_client *c, const char *s, size_t len, int64_t *out)
{
    if (tl_parse_int(s, len, out))
        return true;
    tl_reply_error(c, "ERR value is not an integer or out of range");
    return false;
}

bool tl_arg_float(struct tl_client *c, const char *s, size_t len, long double *out)
{
    if (tl_parse_float(s, len, out))
        return true;
    tl_reply_error(c, "ERR value is not a valid float");
    return false;
}

bool tl_arg_eq(const char *s, size_t len, const char *word)
{
    for (size_t i = 0; i < len; i++)
        if (word[i] == '\0' ||
            ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)word[i]))
            return false;
    return word[len] == '\0';
}

/* ---- EXEC's exclusion (see the file comment) ------------------------------------------------ */

struct tl_cmd_slot {
    _Atomic int active;       /* a command is running on the owning thread */
    _Atomic bool in_use;      /* owned by a live thread */
    struct tl_cmd_slot *next; /* set before the slot is published, never changed */
} __attribute__((aligned(TL_CACHE_LINE)));

static _Atomic(struct tl_cmd_slot *) slots_head;
static pthread_mutex_t slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t slot_key;
static bool slot_key_ok;
static _Thread_local struct tl_cmd_slot *my_slot;
static _Atomic bool exec_pending;

static void slot_release(void *p)
{
    struct tl_cmd_slot *s = p;
    atomic_store_explicit(&s->in_use, false, memory_order_release);
}

static void slots_init(void)
{
    slot_key_ok = pthread_key_create(&slot_key, slot_release) == 0;
}

/* The calling thread's slot, made (or reused from a finished thread) at its first command.
 * NULL if none can be had: the thread then takes exec_lock shared for each command. */
static struct tl_cmd_slot *thread_slot(void)
{
    if (my_slot)
        return my_slot;
    if (!slot_key_ok)
        return NULL;
    pthread_mutex_lock(&slots_mutex);
    struct tl_cmd_slot *s = atomic_load_explicit(&slots_head, memory_order_relaxed);
    for (; s; s = s->next)
        if (!atomic_load_explicit(&s->in_use, memory_order_acquire))
            break;
    if (!s) {
        s = aligned_alloc(TL_CACHE_LINE, sizeof *s);
        if (s) {
            atomic_init(&s->active, 0);
            s->next = atomic_load_explicit(&slots_head, memory_order_relaxed);
            atomic_init(&s->in_use, true);
            atomic_store_explicit(&slots_head, s, memory_order_seq_cst);
        }
    } else {
        atomic_store_explicit(&s->in_use, true, memory_order_relaxed);
    }
    pthread_mutex_unlock(&slots_mutex);
    if (s && pthread_setspecific(slot_key, s) != 0) {
        slot_release(s);
        s = NULL;
    }
    my_slot = s;
    return s;
}

/* Marks the calling thread as running a command; waits first while an EXEC runs. */
static struct tl_cmd_slot *shared_enter(void)
{
    struct tl_cmd_slot *s = thread_slot();
    if (!s) {
        pthread_rwlock_rdlock(&tl_srv->exec_lock);
        return NULL;
    }
    for (;;) {
        /* Sequentially consistent exchange and load (not a fence: TSan does not model fences):
         * this and EXEC's mirror image cannot both miss the other's store. */
        atomic_exchange_explicit(&s->active, 1, memory_order_seq_cst);
        if (!atomic_load_explicit(&exec_pending, memory_order_seq_cst))
            return s;
        atomic_store_explicit(&s->active, 0, memory_order_release);
        /* exec_pending is only set while EXEC holds exec_lock exclusive: wait for it. */
        pthread_rwlock_rdlock(&tl_srv->exec_lock);
        pthread_rwlock_unlock(&tl_srv->exec_lock);
    }
}

static void shared_exit(struct tl_cmd_slot *s)
{
    if (!s)
        pthread_rwlock_unlock(&tl_srv->exec_lock);
    else
        atomic_store_explicit(&s->active, 0, memory_order_release);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Waits until no other thread runs a command, and keeps it so until exclusive_end. */
static void exclusive_begin(void)
{
    pthread_rwlock_wrlock(&tl_srv->exec_lock);
    atomic_exchange_explicit(&exec_pending, true, memory_order_seq_cst);
    struct tl_cmd_slot *self = my_slot;
    for (struct tl_cmd_slot *s = atomic_load_explicit(&slots_head, memory_order_seq_cst); s;
         s = s->next) {
        if (s == self)
            continue;
        for (int spins = 0; atomic_load_explicit(&s->active, memory_order_seq_cst); spins++) {
            if (spins < TL_EXEC_SPINS)
                cpu_relax();
            else
                sched_yield();
        }
    }
}

static void exclusive_end(void)
{
    atomic_store_explicit(&exec_pending, false, memory_order_release);
    pthread_rwlock_unlock(&tl_srv->exec_lock);
}

/* ---- time ---------------------------------------------------------------------------------- */

static __thread int64_t command_time_us;

void tl_command_time_set(int64_t us)
{
    command_time_us = us;
}

int64_t tl_now_ms(void)
{
    return command_time_us ? command_time_us / 1000 : tl_clock_ms();
}

/* Unix time in microseconds from the clock: commands' start times and the slow log. */
static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tl_clock_ms(void)
{
    return now_us() / 1000;
}

/* ---- the slow log -------------------------------------------------------------------------- */

/* Copies the arguments as SLOWLOG GET shows them into e (one allocation at e->argv). */
static int slowlog_fill(struct tl_slowlog_entry *e, const struct tl_args *a)
{
    int argc = a->argc < TL_SLOWLOG_MAX_ARGS ? a->argc : TL_SLOWLOG_MAX_ARGS;
    size_t bytes = 0;
    for (int j = 0; j < argc; j++)
        bytes += (a->len[j] > TL_SLOWLOG_SHOW_BYTES ? TL_SLOWLOG_SHOW_BYTES : a->len[j]) +
                 TL_SLOWLOG_SUFFIX_BYTES + 1;
    size_t head = (size_t)argc * (sizeof(char *) + sizeof(size_t));
    char *block = malloc(head + bytes);
    if (!block)
        return -ENOMEM;
    e->argc = argc;
    e->argv = (char **)block;
    e->len = (size_t *)(block + (size_t)argc * sizeof(char *));
    char *dst = block + head;
    for (int j = 0; j < argc; j++) {
        size_t n;
        if (j == argc - 1 && a->argc > argc) {
            n = (size_t)snprintf(dst, TL_SLOWLOG_SUFFIX_BYTES + 1, "... (%d more arguments)",
                                 a->argc - argc + 1);
        } else if (a->len[j] > TL_SLOWLOG_SHOW_BYTES) {
            memcpy(dst, a->argv[j], TL_SLOWLOG_SHOW_BYTES);
            n = TL_SLOWLOG_SHOW_BYTES +
                (size_t)snprintf(dst + TL_SLOWLOG_SHOW_BYTES, TL_SLOWLOG_SUFFIX_BYTES + 1,
                                 "... (%zu more bytes)", a->len[j] - TL_SLOWLOG_SHOW_BYTES);
        } else {
            n = a->len[j];
            memcpy(dst, a->argv[j], n);
            dst[n] = '\0';
        }
        e->argv[j] = dst;
        e->len[j] = n;
        dst += n + 1;
    }
    return 0;
}

static void slowlog_clear_entry(struct tl_slowlog_entry *e)
{
    free(e->argv);
    e->argv = NULL;
    e->len = NULL;
    e->argc = 0;
}

/* Makes the ring hold cap entries, keeping the newest. Called with slowlog_lock held. */
static int slowlog_resize(struct tl_server *s, size_t cap)
{
    struct tl_slowlog_entry *ring = cap ? calloc(cap, sizeof *ring) : NULL;
    if (cap && !ring)
        return -ENOMEM;
    size_t len = s->slowlog_cap ? s->slowlog_len : 0;
    size_t keep = len < cap ? len : cap;
    for (size_t i = 0; i < len; i++) {
        /* i-th newest */
        size_t at = (s->slowlog_head + s->slowlog_cap - 1 - i) % s->slowlog_cap;
        if (i < keep)
            ring[keep - 1 - i] = s->slowlog[at];
        else
            slowlog_clear_entry(&s->slowlog[at]);
    }
    free(s->slowlog);
    s->slowlog = ring;
    s->slowlog_cap = cap;
    s->slowlog_len = keep;
    s->slowlog_head = cap ? keep % cap : 0;
    return 0;
}

static void slowlog_push(struct tl_client *c, const struct tl_args *a, int64_t start_us,
                         int64_t duration_us)
{
    struct tl_server *s = tl_srv;
    struct tl_slowlog_entry e = {0};
    if (slowlog_fill(&e, a) != 0)
        return;
    e.time_s = start_us / 1000000;
    e.duration_us = duration_us;
    snprintf(e.addr, sizeof e.addr, "%s", c->addr);
    snprintf(e.name, sizeof e.name, "%s", c->name);

    pthread_mutex_lock(&s->slowlog_lock);
    int max = __atomic_load_n(&s->cfg.slowlog_max_len, __ATOMIC_RELAXED);
    size_t cap = max > 0 ? (size_t)max : 0;
    if ((cap != s->slowlog_cap || !s->slowlog) && slowlog_resize(s, cap) != 0)
        cap = 0;
    if (cap == 0 || !s->slowlog) {
        pthread_mutex_unlock(&s->slowlog_lock);
        slowlog_clear_entry(&e);
        return;
    }
    e.id = s->slowlog_next_id++;
    struct tl_slowlog_entry *slot = &s->slowlog[s->slowlog_head];
    if (s->slowlog_len == s->slowlog_cap)
        slowlog_clear_entry(slot); /* the oldest */
    else
        s->slowlog_len++;
    *slot = e;
    s->slowlog_head = (s->slowlog_head + 1) % s->slowlog_cap;
    pthread_mutex_unlock(&s->slowlog_lock);
}

/* Logs a command that ran from start_us until now, if it was slow. Returns the time it read
 * as now (the command's end, for its statistics and the next command's start). */
static int64_t slowlog_check(struct tl_client *c, const struct tl_args *a, int64_t start_us)
{
    int64_t end_us = now_us();
    long long slower_than =
        tl_srv ? __atomic_load_n(&tl_srv->cfg.slowlog_log_slower_than, __ATOMIC_RELAXED) : -1;
    if (slower_than < 0)
        return end_us;
    int64_t d = end_us - start_us;
    if (d < 0)
        d = 0;
    if (d >= slower_than)
        slowlog_push(c, a, start_us, d);
    return end_us;
}

/* ---- MULTI / EXEC / DISCARD ---------------------------------------------------------------- */

/* A copy of a, laid out as the parser lays out requests (tl_args_free releases it). */
static int args_dup(struct tl_args *dst, const struct tl_args *a, size_t *bytes_out)
{
    size_t bytes = 0;
    for (int i = 0; i < a->argc; i++)
        bytes += a->len[i] + 1;
    size_t head = (size_t)a->argc * (sizeof(char *) + sizeof(size_t));
    char *block = malloc(head + bytes);
    if (!block)
        return -ENOMEM;
    dst->argc = a->argc;
    dst->argv = (char **)block;
    dst->len = (size_t *)(block + (size_t)a->argc * sizeof(char *));
    char *p = block + head;
    for (int i = 0; i < a->argc; i++) {
        memcpy(p, a->argv[i], a->len[i]);
        p[a->len[i]] = '\0';
        dst->argv[i] = p;
        dst->len[i] = a->len[i];
        p += a->len[i] + 1;
    }
    *bytes_out = head + bytes;
    return 0;
}

static void queue_free(struct tl_queued_cmd *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tl_args_free(&q[i].args);
    free(q);
}

/* ---- WATCH ---------------------------------------------------------------------------------- */

/* Values up to this long are kept by WATCH, to be compared across a memtable switch; a longer
 * one counts as written once the memtable has switched (EXEC fails, and the client retries). */
#define WATCH_VALUE_MAX_BYTES 4096

/* What a watched key held: its value (type 0: missing; bytes not kept when too long: big), with
 * its expiry. */
struct watched_value {
    bool big;
    struct tl_val v; /* v.bytes owned (a copy) */
};

/* A watched key: its engine key, the engine's write stamp of it when WATCH ran, and what it
 * held then (EXEC fails, as in Redis, if it has expired since). */
struct tl_watched {
    char *ekey;
    size_t elen;
    uint64_t stamp;
    bool dirty; /* found written, or existing, when FLUSHALL or FLUSHDB emptied its database */
    struct watched_value held;
};

static void watched_value_free(struct watched_value *h)
{
    free(h->v.bytes);
    h->v.bytes = NULL;
}

/* Reads what the watched key holds now into *h (its bytes copied: a read's may point into the
 * engine's tables). */
static int watched_read(const struct tl_watched *w, struct watched_value *h)
{
    struct tl_val v;
    memset(h, 0, sizeof *h);
    int rc = tl_db_get(tl_srv->db, w->ekey, w->elen, &v);
    if (rc == 1) {
        h->v.type = v.type;
        h->v.tag = v.tag;
        h->v.i = v.i;
        h->v.expire_ms = v.expire_ms;
        h->big = v.type != TL_VAL_INT && v.len > WATCH_VALUE_MAX_BYTES;
        if (v.type != TL_VAL_INT && !h->big) {
            h->v.len = v.len;
            h->v.bytes = malloc(v.len ? v.len : 1);
            if (h->v.bytes)
                memcpy(h->v.bytes, v.bytes, v.len);
            else
                rc = -ENOMEM;
        }
    }
    tl_val_clear(&v);
    return rc < 0 ? rc : 0;
}

static bool watched_value_same(const struct watched_value *a, const struct watched_value *b)
{
    if (a->v.type != b->v.type)
        return false;
    if (a->v.type == 0)
        return true; /* missing both times */
    if (a->big || b->big || a->v.tag != b->v.tag || a->v.expire_ms != b->v.expire_ms)
        return false;
    if (a->v.type == TL_VAL_INT)
        return a->v.i == b->v.i;
    return a->v.len == b->v.len && memcmp(a->v.bytes, b->v.bytes, a->v.len) == 0;
}

/* A client's watched keys change only in its own commands (and when it is freed, after it left
 * the client registry). tl_watch_flushing reads every client's from FLUSHALL and FLUSHDB, which
 * run alone: no lock is needed for them, only clients_lock for the registry. */
static void unwatch_all(struct tl_client *c)
{
    for (size_t i = 0; i < c->n_watched; i++) {
        free(c->watched[i].ekey);
        watched_value_free(&c->watched[i].held);
    }
    free(c->watched);
    c->watched = NULL;
    c->n_watched = c->cap_watched = 0;
}

/* Whether watched key w was written since WATCH. While the same memtable is active the stamps
 * tell exactly, a write that left the value as it was included (as Redis counts it). Across a
 * memtable switch (a flush) they cannot: then w counts as written if its value, existence or
 * expiry differs from WATCH's (a key changed and changed back across a flush is missed). */
static bool watched_written(const struct tl_watched *w)
{
    uint64_t stamp = tl_db_write_stamp(tl_srv->db, w->ekey, w->elen);
    if (tl_db_stamps_same_table(stamp, w->stamp))
        return stamp != w->stamp;
    struct watched_value now;
    bool same = watched_read(w, &now) == 0 && watched_value_same(&now, &w->held);
    watched_value_free(&now);
    return !same;
}

/* Whether a watched key was written, or has expired, since WATCH (with other commands
 * excluded). */
static bool watched_dirty(const struct tl_client *c)
{
    int64_t now = tl_now_ms();
    for (size_t i = 0; i < c->n_watched; i++) {
        const struct tl_watched *w = &c->watched[i];
        int64_t expire_ms = w->held.v.expire_ms; /* 0 for a key missing at WATCH */
        if (w->dirty || (expire_ms && now > expire_ms) || watched_written(w))
            return true; /* expired as tl_db_get counts it: past its expire_ms */
    }
    return false;
}

/* Before a flush switches the memtable (which blurs the stamps), each watched key of the
 * databases it empties is judged: dirty if it was written since WATCH, or exists now (the flush
 * will delete it, a write for Redis). */
void tl_watch_flushing(int db, bool done)
{
    pthread_mutex_lock(&tl_srv->clients_lock);
    for (size_t i = 0; i < tl_srv->n_clients; i++) {
        struct tl_client *o = tl_srv->clients[i];
        for (size_t j = 0; j < o->n_watched; j++) {
            struct tl_watched *w = &o->watched[j];
            struct tl_val v;
            if (w->dirty || (db >= 0 && tl_dbkey_db(w->ekey, w->elen) != db))
                continue;
            if (done) {
                /* A clean key was missing, and still is: stamped again in the new memtable,
                 * so that a write after the flush is told exactly. */
                w->stamp = tl_db_write_stamp(tl_srv->db, w->ekey, w->elen);
                continue;
            }
            w->dirty = tl_db_get(tl_srv->db, w->ekey, w->elen, &v) == 1 || watched_written(w);
            tl_val_clear(&v);
        }
    }
    pthread_mutex_unlock(&tl_srv->clients_lock);
}

/* WATCH key [key ...]: the stamp is taken before the key is read, so a write between the two
 * moves it (a write before it is seen by the read). Inside MULTI it is refused without dooming
 * the transaction, as in Redis. */
static void cmd_watch(struct tl_client *c, struct tl_args *a)
{
    if (c->in_multi) {
        tl_reply_error(c, "ERR WATCH inside MULTI is not allowed");
        return;
    }
    for (int i = 1; i < a->argc; i++) {
        struct tl_dbkey k;
        int rc = tl_dbkey_make(&k, c->db, a->argv[i], a->len[i]);
        if (rc < 0) {
            tl_dbkey_free(&k);
            tl_reply_engine_error(c, rc);
            return;
        }
        bool known = false; /* watched already: kept as it is, as in Redis */
        for (size_t j = 0; j < c->n_watched && !known; j++)
            known = c->watched[j].elen == k.len && memcmp(c->watched[j].ekey, k.p, k.len) == 0;
        if (known) {
            tl_dbkey_free(&k);
            continue;
        }
        struct tl_watched w = {.ekey = malloc(k.len ? k.len : 1), .elen = k.len};
        if (w.ekey)
            memcpy(w.ekey, k.p, k.len);
        tl_dbkey_free(&k);
        if (!w.ekey) {
            tl_reply_error(c, "ERR out of memory watching the keys");
            return;
        }
        w.stamp = tl_db_write_stamp(tl_srv->db, w.ekey, w.elen);
        if ((rc = watched_read(&w, &w.held)) < 0) {
            watched_value_free(&w.held);
            free(w.ekey);
            tl_reply_engine_error(c, rc);
            return;
        }
        if (c->n_watched == c->cap_watched) {
            size_t cap = c->cap_watched ? 2 * c->cap_watched : 8;
            struct tl_watched *more = realloc(c->watched, cap * sizeof *more);
            if (more) {
                c->watched = more;
                c->cap_watched = cap;
            }
        }
        if (c->n_watched == c->cap_watched) {
            watched_value_free(&w.held);
            free(w.ekey);
            tl_reply_error(c, "ERR out of memory watching the keys");
            return;
        }
        c->watched[c->n_watched++] = w;
    }
    tl_reply_ok(c);
}

static void cmd_unwatch(struct tl_client *c, struct tl_args *a)
{
    (void)a;
    unwatch_all(c);
    tl_reply_ok(c);
}

void tl_multi_discard(struct tl_client *c)
{
    queue_free(c->queued, c->n_queued);
    c->queued = NULL;
    c->n_queued = c->cap_queued = 0;
    c->in_multi = false;
    c->multi_failed = false;
    unwatch_all(c);
}

/* A command refused before it ran: inside MULTI it also dooms the transaction. */
static void reject(struct tl_client *c, const char *text)
{
    tl_reply_error(c, text);
    if (c->in_multi)
        c->multi_failed = true;
}

/* A command that was found but refused before it ran: counted as rejected (INFO commandstats). */
static void reject_call(struct tl_client *c, const char *text)
{
    tl_cmdstat_rejected(c->last_stat);
    reject(c, text);
}

/* Whether the reply that starts at offset from of c->out is an error. */
static bool replied_error(const struct tl_client *c, size_t from)
{
    return c->out.len > from && c->out.data[from] == '-';
}

/* Queues a command inside MULTI. The queue's bytes count against client-query-buffer-limit,
 * since they are request bytes held for the client. */
static void queue_command(struct tl_client *c, const struct tl_command *cmd, tl_cmd_fn fn,
                          struct tl_args *a)
{
    if (c->n_queued == c->cap_queued) {
        size_t cap = c->cap_queued ? c->cap_queued * 2 : 8;
        struct tl_queued_cmd *q = realloc(c->queued, cap * sizeof *q);
        if (!q) {
            reject_call(c, "ERR out of memory queueing the command");
            return;
        }
        c->queued = q;
        c->cap_queued = cap;
    }
    struct tl_queued_cmd *e = &c->queued[c->n_queued];
    size_t bytes;
    if (args_dup(&e->args, a, &bytes) != 0) {
        reject_call(c, "ERR out of memory queueing the command");
        return;
    }
    size_t before = c->n_queued ? c->queued[c->n_queued - 1].queued_bytes : 0;
    e->queued_bytes = before + bytes + sizeof *e;
    long long limit = __atomic_load_n(&tl_srv->cfg.client_query_buffer_limit, __ATOMIC_RELAXED);
    if (limit > 0 && e->queued_bytes > (unsigned long long)limit) {
        tl_args_free(&e->args);
        reject_call(c, "ERR MULTI queue is over client-query-buffer-limit");
        return;
    }
    e->cmd = cmd;
    e->fn = fn;
    c->n_queued++;
    tl_reply_status(c, "QUEUED");
}

static void cmd_multi(struct tl_client *c, struct tl_args *a)
{
    if (c->in_multi) {
        tl_reply_error(c, "ERR MULTI calls can not be nested");
        return;
    }
    c->in_multi = true;
    c->multi_failed = false;
    tl_reply_ok(c);
}

static void cmd_discard(struct tl_client *c, struct tl_args *a)
{
    if (!c->in_multi) {
        tl_reply_error(c, "ERR DISCARD without MULTI");
        return;
    }
    tl_multi_discard(c);
    tl_reply_ok(c);
}

/* Runs the queued commands with every other command excluded (called outside shared_enter).
 * A TL_CMD_EXCLUSIVE command among them runs as the others do: the exclusion is already held. */
static void cmd_exec(struct tl_client *c, struct tl_args *a)
{
    if (!c->in_multi) {
        tl_reply_error(c, "ERR EXEC without MULTI");
        return;
    }
    if (c->multi_failed) {
        tl_multi_discard(c);
        tl_reply_error(c, "EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    struct tl_queued_cmd *q = c->queued;
    size_t n = c->n_queued;
    c->queued = NULL;
    c->n_queued = c->cap_queued = 0;
    c->in_multi = false;

    exclusive_begin();
    if (c->n_watched && watched_dirty(c)) {
        exclusive_end();
        queue_free(q, n);
        unwatch_all(c);
        tl_reply_null_array(c);
        return;
    }
    unwatch_all(c);
    tl_reply_array(c, n);
    c->in_exec = true;
    for (size_t i = 0; i < n; i++) {
        int64_t start_us = now_us();
        size_t out_len = c->out.len;
        tl_command_time_set(start_us);
        q[i].fn(c, &q[i].args);
        tl_command_time_set(0);
        int64_t end_us = slowlog_check(c, &q[i].args, start_us);
        bool failed = replied_error(c, out_len);
        if (failed)
            tl_errorstat_count(c->out.data + out_len, c->out.len - out_len);
        tl_cmdstat_call(tl_command_stat_id(q[i].cmd), end_us - start_us, failed);
    }
    c->in_exec = false;
    exclusive_end();
    queue_free(q, n);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static bool arity_ok(const struct tl_command *cmd, int argc)
{
    return cmd->arity >= 0 ? argc == cmd->arity : argc >= -cmd->arity;
}

static void reject_unknown(struct tl_client *c, const struct tl_args *a)
{
    /* As Redis: the name up to 128 bytes, then arguments while they total under 128 bytes,
     * each cut to what is left of the 128; text stops at a NUL byte. */
    char shown[TL_ERR_SHOW_BYTES * 2 + 8];
    size_t used = 0;
    for (int i = 1; i < a->argc && used < TL_ERR_SHOW_BYTES; i++) {
        int w = snprintf(shown + used, sizeof shown - used, "'%.*s' ",
                         (int)(TL_ERR_SHOW_BYTES - used), a->argv[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    shown[used] = '\0';
    char text[TL_ERR_SHOW_BYTES * 3 + 64];
    snprintf(text, sizeof text, "ERR unknown command '%.*s', with args beginning with: %s",
             TL_ERR_SHOW_BYTES, a->argv[0], shown);
    reject(c, text);
}

static void reject_unknown_subcommand(struct tl_client *c, const struct tl_command *parent,
                                      const struct tl_args *a)
{
    char upper[TL_CMD_NAME_MAX + 1];
    size_t n = strnlen(parent->name, TL_CMD_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = parent->name[i];
        upper[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - ('a' - 'A')) : ch;
    }
    upper[n] = '\0';
    char text[TL_ERR_SHOW_BYTES + TL_CMD_NAME_MAX + 64];
    snprintf(text, sizeof text, "ERR unknown subcommand '%.*s'. Try %s HELP.", TL_ERR_SHOW_BYTES,
             a->argv[1], upper);
    reject(c, text);
}

static void dispatch(struct tl_client *c, struct tl_args *a, int64_t *clock_us)
{
    int64_t start_us = clock_us && *clock_us ? *clock_us : now_us();
    if (clock_us)
        *clock_us = 0;
    c->last_cmd_ms = start_us / 1000;
    if (tl_srv)
        atomic_fetch_add_explicit(&tl_srv->total_commands, 1, memory_order_relaxed);

    const struct tl_command *parent = tl_command_lookup(a->argv[0], a->len[0]);
    if (!parent) {
        reject_unknown(c, a);
        return;
    }
    const struct tl_command *cmd = parent;
    if (parent->subcommands && a->argc >= 2) {
        cmd = find_subcommand(parent, a->argv[1], a->len[1]);
        if (!cmd) {
            reject_unknown_subcommand(c, parent, a);
            return;
        }
    }
    tl_cmd_fn fn = cmd->fn ? cmd->fn : parent->fn;
    if (!fn) {
        reject_unknown_subcommand(c, parent, a);
        return;
    }
    char name[TL_CMD_NAME_MAX * 2 + 2];
    if (cmd != c->last_def) { /* a client mostly repeats its command: copy the name on change */
        full_name(name, sizeof name, parent, cmd);
        size_t nlen = strnlen(name, sizeof c->last_cmd - 1);
        memcpy(c->last_cmd, name, nlen);
        c->last_cmd[nlen] = '\0';
        c->last_def = cmd;
        c->last_stat = tl_command_stat_id(cmd);
    }

    if (!arity_ok(cmd, a->argc)) {
        full_name(name, sizeof name, parent, cmd);
        char text[sizeof name + 64];
        snprintf(text, sizeof text, "ERR wrong number of arguments for '%s' command", name);
        reject_call(c, text);
        return;
    }
    unsigned flags = cmd->flags | (parent->flags & (TL_CMD_NOAUTH | TL_CMD_NOMULTI));
    if (!c->authenticated && !(flags & TL_CMD_NOAUTH)) {
        reject_call(c, "NOAUTH Authentication required.");
        return;
    }
    if (c->in_multi && (flags & TL_CMD_DENY_MULTI)) {
        /* Redis's text; queued, SHUTDOWN would stop the server at EXEC */
        reject_call(c, "ERR Command not allowed inside a transaction");
        return;
    }
    if (c->in_multi && !(flags & TL_CMD_NOMULTI)) {
        queue_command(c, cmd, fn, a);
        return;
    }
    size_t out_len = c->out.len;
    if (fn == cmd_exec) {
        cmd_exec(c, a); /* takes the exclusive side itself, and times each queued command */
        tl_cmdstat_call(c->last_stat, now_us() - start_us, replied_error(c, out_len));
        return;
    }
    tl_command_time_set(start_us);
    if (flags & TL_CMD_EXCLUSIVE) {
        exclusive_begin();
        fn(c, a);
        exclusive_end();
    } else {
        struct tl_cmd_slot *slot = shared_enter();
        fn(c, a);
        shared_exit(slot);
    }
    tl_command_time_set(0);
    int64_t end_us = slowlog_check(c, a, start_us);
    tl_cmdstat_call(c->last_stat, end_us - start_us, replied_error(c, out_len));
    if (clock_us)
        *clock_us = end_us;
}

void tl_dispatch(struct tl_client *c, struct tl_args *a, int64_t *clock_us)
{
    if (a->argc <= 0)
        return;
    size_t out_len = c->out.len;
    bool off = c->reply_off, skip = c->reply_skip;
    c->reply_skip = false;
    dispatch(c, a, clock_us);
    if (c->out.len > out_len && c->out.data[out_len] == '-') /* counted even if dropped below */
        tl_errorstat_count(c->out.data + out_len, c->out.len - out_len);
    /* CLIENT REPLY OFF (still off after the command) or a SKIP for this command: whatever the
     * command answered, errors too, is dropped, whole (an EXEC's array is kept or dropped as
     * one). CLIENT REPLY OFF and SKIP answer nothing themselves; ON answers, once on. */
    if (skip || (off && c->reply_off))
        c->out.len = out_len;
    if (c->reply_skip_next) {
        c->reply_skip_next = false;
        c->reply_skip = true;
    }
}
