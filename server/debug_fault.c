/*
 * debug_fault.c - run-time control of fault injection (storage/fault.h) in tallyd-faults, the
 * test build of the server; compiled into no other program.
 *
 * With TALLY_FAULT_CONTROL=PATH in its environment, tallyd-faults watches the file PATH (every
 * FAULT_POLL_MS). The file holds a generation number on its first line and fault rules, one a
 * line, in fault.h's text form ("wal eio count 3", "sst short", "clear"). When the generation
 * changes, the rules are applied in order and PATH.status is replaced (written, then renamed)
 * with "gen N" and one line "FILE KIND COUNT" per file and fault kind: the faults injected so
 * far, for the test's figures. A writer replaces PATH by renaming a finished file over it, and
 * waits for PATH.status to show its generation. A rule that does not parse is reported in the
 * status as "error TEXT" and the rest of the file still applies.
 *
 * No command is added to the server: the control path exists only in this build.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "tallystore.h"

#define FAULT_POLL_MS       2
#define FAULT_CONTROL_BYTES 4096
#define FAULT_PATH_BYTES    4096
#define FAULT_STATUS_BYTES  8192

static const char *const status_files[TL_FAULT_FILES] = {"wal", "sst", "manifest"};
static const char *const status_kinds[TL_FAULT_KINDS] = {"eio", "enospc", "short", "sync"};

/* Reads the whole control file into buf (NUL-terminated); false if it cannot be read. */
static bool read_control(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    return len > 0;
}

/* Replaces PATH.status with the generation, the injected counts and any rule errors. */
static void write_status(const char *path, unsigned long long gen, const char *errors)
{
    char status[FAULT_STATUS_BYTES], tmp[FAULT_PATH_BYTES + 16], final[FAULT_PATH_BYTES + 16];
    int len = snprintf(status, sizeof status, "gen %llu\n%s", gen, errors);
    for (int f = 0; f < TL_FAULT_FILES; f++)
        for (int k = 0; k < TL_FAULT_KINDS; k++)
            len += snprintf(status + len, sizeof status - (size_t)len, "%s %s %llu\n",
                            status_files[f], status_kinds[k],
                            (unsigned long long)tl_fault_injected((enum tl_fault_file)f,
                                                                  (enum tl_fault_kind)k));
    snprintf(tmp, sizeof tmp, "%s.status.tmp", path);
    snprintf(final, sizeof final, "%s.status", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "tallyd-faults: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    bool ok = write(fd, status, (size_t)len) == len;
    close(fd);
    if (!ok || rename(tmp, final) < 0)
        fprintf(stderr, "tallyd-faults: cannot replace %s: %s\n", final, strerror(errno));
}

static void *control_main(void *arg)
{
    const char *path = arg;
    unsigned long long applied = 0;
    bool any = false;
    char buf[FAULT_CONTROL_BYTES], errors[FAULT_CONTROL_BYTES];
    struct timespec poll = {0, FAULT_POLL_MS * 1000000L};
    for (;;) {
        nanosleep(&poll, NULL);
        if (!read_control(path, buf, sizeof buf))
            continue;
        char *save = NULL;
        char *line = strtok_r(buf, "\n", &save);
        char *end;
        unsigned long long gen = line ? strtoull(line, &end, 10) : 0;
        if (!line || (any && gen == applied))
            continue;
        size_t elen = 0;
        errors[0] = '\0';
        while ((line = strtok_r(NULL, "\n", &save))) {
            if (tl_fault_apply(line) < 0 && elen < sizeof errors)
                elen += (size_t)snprintf(errors + elen, sizeof errors - elen, "error %s\n",
                                         tl_last_error());
        }
        applied = gen;
        any = true;
        write_status(path, gen, errors);
    }
    return NULL;
}

__attribute__((constructor)) static void fault_control_start(void)
{
    const char *path = getenv("TALLY_FAULT_CONTROL");
    if (!path || !*path)
        return;
    static char copy[FAULT_PATH_BYTES];
    snprintf(copy, sizeof copy, "%s", path);
    pthread_t th;
    int rc = pthread_create(&th, NULL, control_main, copy);
    if (rc != 0) {
        fprintf(stderr, "tallyd-faults: cannot start the fault control thread for %s: %s\n", copy,
                strerror(rc));
        exit(1);
    }
    pthread_detach(th);
}
