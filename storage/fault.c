/*
 * fault.c - the rules of fault injection (fault.h) and the hooks uring_io.c calls, compiled
 * only with TL_FAULT_INJECTION (the test build of the engine).
 *
 * The rules sit in one table under one mutex: the hooks are called once per write or sync,
 * and only in tests, so a lock costs nothing that matters. A hook first finds the kind of file
 * behind the descriptor by reading its /proc/self/fd link; descriptors of other files
 * (checkpoints, directories) are never failed.
 */
#include "fault.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

#define FAULT_LINK_BYTES 4096
#define FAULT_WORDS      8
#define FAULT_LINE_BYTES 256

struct rule {
    bool active;
    enum tl_fault_kind kind;
    uint64_t skip;  /* eligible calls still to let through */
    uint64_t count; /* faults still to inject; 0: until cleared */
};

static const char *const file_names[TL_FAULT_FILES] = {"wal", "sst", "manifest"};
static const char *const kind_names[TL_FAULT_KINDS] = {"eio", "enospc", "short", "sync"};

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule write_rules[TL_FAULT_FILES], sync_rules[TL_FAULT_FILES];
static uint64_t injected[TL_FAULT_FILES][TL_FAULT_KINDS];

void tl_fault_set(enum tl_fault_file file, enum tl_fault_kind kind, uint64_t skip, uint64_t count)
{
    pthread_mutex_lock(&fault_mu);
    struct rule *r = kind == TL_FAULT_SYNC ? &sync_rules[file] : &write_rules[file];
    *r = (struct rule){.active = true, .kind = kind, .skip = skip, .count = count};
    pthread_mutex_unlock(&fault_mu);
}

void tl_fault_clear(enum tl_fault_file file)
{
    pthread_mutex_lock(&fault_mu);
    write_rules[file].active = false;
    sync_rules[file].active = false;
    pthread_mutex_unlock(&fault_mu);
}

void tl_fault_clear_all(void)
{
    for (int f = 0; f < TL_FAULT_FILES; f++)
        tl_fault_clear((enum tl_fault_file)f);
}

uint64_t tl_fault_injected(enum tl_fault_file file, enum tl_fault_kind kind)
{
    pthread_mutex_lock(&fault_mu);
    uint64_t n = injected[file][kind];
    pthread_mutex_unlock(&fault_mu);
    return n;
}

void tl_fault_report(FILE *out, const char *who)
{
    pthread_mutex_lock(&fault_mu);
    uint64_t total = 0;
    for (int f = 0; f < TL_FAULT_FILES; f++) {
        fprintf(out, "%s: faults injected into %-8s files:", who, file_names[f]);
        for (int k = 0; k < TL_FAULT_KINDS; k++) {
            fprintf(out, " %s %" PRIu64, kind_names[k], injected[f][k]);
            total += injected[f][k];
        }
        fputc('\n', out);
    }
    fprintf(out, "%s: faults injected in all: %" PRIu64 "\n", who, total);
    pthread_mutex_unlock(&fault_mu);
}

/* The kind of file fd is open on, or -1 for a file no rule applies to. */
static int file_of_fd(int fd)
{
    char link[64], target[FAULT_LINK_BYTES];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return -1;
    target[n] = '\0';
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".wal") == 0)
        return TL_FAULT_WAL;
    if (len > 4 && strcmp(base + len - 4, ".sst") == 0)
        return TL_FAULT_SST;
    if (strncmp(base, "MANIFEST-", 9) == 0 || strncmp(base, "CURRENT", 7) == 0)
        return TL_FAULT_MANIFEST;
    return -1;
}

/* Whether rule r fires now (fault_mu held); counts the fault if it does. */
static bool rule_fires(struct rule *r, int file)
{
    if (!r->active)
        return false;
    if (r->skip > 0) {
        r->skip--;
        return false;
    }
    if (r->count > 0 && --r->count == 0)
        r->active = false;
    injected[file][r->kind]++;
    return true;
}

int tl_fault_write(int fd, const void *buf, size_t len, uint64_t off)
{
    int file = file_of_fd(fd);
    if (file < 0)
        return 0;
    pthread_mutex_lock(&fault_mu);
    struct rule *r = &write_rules[file];
    bool fires = rule_fires(r, file);
    enum tl_fault_kind kind = r->kind;
    pthread_mutex_unlock(&fault_mu);
    if (!fires)
        return 0;
    if (kind == TL_FAULT_EIO)
        return -EIO;
    if (kind == TL_FAULT_SHORT && len / 2 > 0) {
        /* The first half reaches the file as a disk filling up mid-write leaves it. A plain
         * pwrite: this is the test build's stand-in for the kernel, not the engine's I/O. */
        if (pwrite(fd, buf, len / 2, (off_t)off) < 0)
            return -errno;
    }
    return -ENOSPC;
}

int tl_fault_sync(int fd)
{
    int file = file_of_fd(fd);
    if (file < 0)
        return 0;
    pthread_mutex_lock(&fault_mu);
    bool fires = rule_fires(&sync_rules[file], file);
    pthread_mutex_unlock(&fault_mu);
    return fires ? -EIO : 0;
}

/* Index of word w in names[n], or -1. */
static int lookup(const char *w, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(w, names[i]) == 0)
            return i;
    return -1;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

int tl_fault_apply(const char *line)
{
    char copy[FAULT_LINE_BYTES], *words[FAULT_WORDS], *save = NULL;
    int n = 0;
    snprintf(copy, sizeof copy, "%s", line);
    for (char *w = strtok_r(copy, " \t\r\n", &save); w && n < FAULT_WORDS;
         w = strtok_r(NULL, " \t\r\n", &save))
        words[n++] = w;
    if (n == 0)
        return 0;
    if (strcmp(words[0], "clear") == 0) {
        if (n == 1) {
            tl_fault_clear_all();
            return 0;
        }
        int f = lookup(words[1], file_names, TL_FAULT_FILES);
        if (f < 0 || n > 2)
            return tl_error(-EINVAL, "fault rule '%s': say 'clear' or 'clear wal|sst|manifest'",
                            line);
        tl_fault_clear((enum tl_fault_file)f);
        return 0;
    }
    int f = lookup(words[0], file_names, TL_FAULT_FILES);
    int k = n >= 2 ? lookup(words[1], kind_names, TL_FAULT_KINDS) : -1;
    if (f < 0 || k < 0)
        return tl_error(-EINVAL,
                        "fault rule '%s': expected 'wal|sst|manifest eio|enospc|short|sync "
                        "[skip N] [count N]'",
                        line);
    uint64_t skip = 0, count = 0;
    for (int i = 2; i < n; i += 2) {
        uint64_t *dst = strcmp(words[i], "skip") == 0    ? &skip
                        : strcmp(words[i], "count") == 0 ? &count
                                                         : NULL;
        if (!dst || i + 1 >= n || !parse_u64(words[i + 1], dst))
            return tl_error(-EINVAL, "fault rule '%s': bad option '%s' (skip N, count N)", line,
                            words[i]);
    }
    tl_fault_set((enum tl_fault_file)f, (enum tl_fault_kind)k, skip, count);
    return 0;
}
