/*
 * log.c - tallyd's log, in Redis's line format so that the tools that read Redis logs read it:
 *
 *     4242:M 22 Nov 2025 15:08:01.123 * Ready to accept connections tcp on port 6380
 *
 * pid, role ('M': the server; Tally has no child processes), the local time to the
 * millisecond, the level as one character (. debug, - verbose, * notice, # warning) and the
 * message. Each line is formatted in full and written with one write(2) under a mutex, so
 * lines from different threads never interleave. Messages below the level are dropped before
 * they are formatted. Before tl_log_open is called, lines go to stderr at level notice.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* A line longer than this is cut (Redis cuts at 1024; keys in messages can be long). */
#define TL_LOG_LINE_MAX 4096

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int log_level = TL_LOG_NOTICE;
static int log_fd = STDERR_FILENO;
static char log_path[sizeof(((struct tl_config *)0)->logfile)];

void tl_log_open(const char *path, int level)
{
    if (level < TL_LOG_DEBUG)
        level = TL_LOG_DEBUG;
    if (level > TL_LOG_WARNING)
        level = TL_LOG_WARNING;
    atomic_store(&log_level, level);
    if (!path)
        path = "";

    pthread_mutex_lock(&log_lock);
    /* Called again with the same path (CONFIG SET loglevel): only the level changes. */
    if (strcmp(path, log_path) != 0) {
        int fd = STDERR_FILENO;
        if (path[0]) {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) {
                /* Keep logging where we were, and say why. */
                dprintf(log_fd, "Can't open the log file %s: %s\n", path, strerror(errno));
                pthread_mutex_unlock(&log_lock);
                return;
            }
        }
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = fd;
        snprintf(log_path, sizeof(log_path), "%s", path);
    }
    pthread_mutex_unlock(&log_lock);
}

void tl_log(int level, const char *fmt, ...)
{
    static const char level_chars[] = ".-*#";
    if (level < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    if (level < TL_LOG_DEBUG || level > TL_LOG_WARNING)
        level = TL_LOG_WARNING;

    char line[TL_LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int off = snprintf(line, sizeof(line), "%d:M ", (int)getpid());
    off += (int)strftime(line + off, sizeof(line) - (size_t)off, "%d %b %Y %H:%M:%S", &tm);
    off += snprintf(line + off, sizeof(line) - (size_t)off, ".%03d %c ", (int)(tv.tv_usec / 1000),
                    level_chars[level]);

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t len = (size_t)off + (size_t)n;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* cut: keep room for the newline */
    line[len++] = '\n';

    pthread_mutex_lock(&log_lock);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(log_fd, line + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere left to report it */
        done += (size_t)w;
    }
    pthread_mutex_unlock(&log_lock);
}
