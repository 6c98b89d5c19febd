/*
 * test_uring_io.c - the engine's single writes and syncs (storage/uring_io.c), with pwrite,
 * fdatasync and fsync wrapped at link time (-Wl,--wrap): every call is recorded, and a script
 * makes them fail, return short or be interrupted. Checks that a write with sync makes exactly
 * one fdatasync, after all the bytes are written; that short writes and EINTR are carried on
 * where they stopped; that a write making no progress, a failed write and a failed sync are
 * errors naming the offset; and the batched reads still go through io_uring.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "testutil.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
int __real_fsync(int fd);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);

/* What the next calls do: a negative errno fails the call, ACT_SHORT(k) writes at most k bytes,
 * ACT_ZERO returns 0, ACT_REAL does the call. Consumed one a call, then ACT_REAL. */
#define ACT_REAL     0
#define ACT_ZERO     1
#define ACT_SHORT(k) (1000000 + (k))
#define MAX_SCRIPT   8
#define MAX_EVENTS   64

struct event {
    char kind; /* 'W' pwrite, 'D' fdatasync, 'S' fsync */
    off_t off;
    size_t asked;
    long result;
};

static int script[MAX_SCRIPT], n_script, next_act;
static struct event events[MAX_EVENTS];
static int n_events;

static void reset(void)
{
    n_script = next_act = n_events = 0;
}

static void plan(int act)
{
    CHECK(n_script < MAX_SCRIPT);
    script[n_script++] = act;
}

static int take_act(void)
{
    return next_act < n_script ? script[next_act++] : ACT_REAL;
}

static void record(char kind, off_t off, size_t asked, long result)
{
    if (n_events < MAX_EVENTS)
        events[n_events++] = (struct event){kind, off, asked, result};
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int act = take_act();
    ssize_t r;
    if (act < 0) {
        errno = -act;
        r = -1;
    } else if (act == ACT_ZERO) {
        r = 0;
    } else {
        size_t k = act >= ACT_SHORT(0) && (size_t)(act - ACT_SHORT(0)) < n
                       ? (size_t)(act - ACT_SHORT(0))
                       : n;
        r = __real_pwrite(fd, buf, k, off);
    }
    int saved = errno;
    record('W', off, n, r < 0 ? -saved : r);
    errno = saved;
    return r;
}

static int sync_call(char kind, int fd)
{
    int act = take_act();
    int r;
    if (act < 0) {
        errno = -act;
        r = -1;
    } else {
        r = kind == 'D' ? __real_fdatasync(fd) : __real_fsync(fd);
    }
    int saved = errno;
    record(kind, 0, 0, r < 0 ? -saved : r);
    errno = saved;
    return r;
}

int __wrap_fdatasync(int fd)
{
    return sync_call('D', fd);
}

int __wrap_fsync(int fd)
{
    return sync_call('S', fd);
}

static int count(char kind)
{
    int n = 0;
    for (int i = 0; i < n_events; i++)
        n += events[i].kind == kind;
    return n;
}

#define LEN 10000
#define OFF 100

static uint8_t data[LEN];

static int open_file(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    return fd;
}

/* The file holds data at OFF (read back through the engine's io_uring read). */
static void check_contents(int fd)
{
    static uint8_t back[LEN];
    int64_t got = tl_io_pread(fd, back, LEN, OFF);
    CHECK_EQ_INT(got, LEN);
    CHECK(memcmp(back, data, LEN) == 0);
}

/* A write with sync, interrupted and short twice: the rest is written where it stopped, and
 * one fdatasync follows the last byte. */
static void test_write_sync_resumes(const char *dir)
{
    int fd = open_file(dir, "resume");
    reset();
    plan(-EINTR);
    plan(ACT_SHORT(3000));
    plan(ACT_SHORT(1));
    CHECK_OK(tl_io_pwrite(fd, data, LEN, OFF, true));
    CHECK_EQ_INT(count('D'), 1);
    CHECK_EQ_INT(count('S'), 0);
    CHECK_EQ_INT(events[n_events - 1].kind, 'D');
    off_t at = OFF;
    size_t written = 0;
    for (int i = 0; i < n_events; i++) {
        if (events[i].kind != 'W')
            continue;
        CHECK_EQ_INT(events[i].off, at); /* each call starts where the last one stopped */
        CHECK_EQ_INT(events[i].asked, LEN - written);
        if (events[i].result > 0) {
            at += events[i].result;
            written += (size_t)events[i].result;
        }
    }
    CHECK_EQ_INT(written, LEN);
    CHECK_EQ_INT(count('W'), 4);
    check_contents(fd);
    close(fd);
}

/* Without sync: no sync call at all. */
static void test_write_without_sync(const char *dir)
{
    int fd = open_file(dir, "nosync");
    reset();
    CHECK_OK(tl_io_pwrite(fd, data, LEN, OFF, false));
    CHECK_EQ_INT(count('W'), 1);
    CHECK_EQ_INT(count('D') + count('S'), 0);
    check_contents(fd);
    close(fd);
}

/* A failed write: its errno, the offset in the message, and no sync after it. */
static void test_write_errors(const char *dir)
{
    int fd = open_file(dir, "errors");
    reset();
    plan(ACT_SHORT(500));
    plan(-ENOSPC);
    CHECK_EQ_INT(tl_io_pwrite(fd, data, LEN, OFF, true), -ENOSPC);
    CHECK(strstr(tl_last_error(), "offset 100") != NULL);
    CHECK(strstr(tl_last_error(), strerror(ENOSPC)) != NULL);
    CHECK_EQ_INT(count('D'), 0);

    reset();
    plan(ACT_ZERO);
    CHECK_EQ_INT(tl_io_pwrite(fd, data, LEN, OFF, true), -EIO);
    CHECK(strstr(tl_last_error(), "no progress") != NULL);
    CHECK_EQ_INT(count('D'), 0);
    close(fd);
}

/* A failed fdatasync after a whole write is an error; an interrupted one is made again. */
static void test_sync_errors(const char *dir)
{
    int fd = open_file(dir, "syncerr");
    reset();
    plan(ACT_REAL);
    plan(-EIO);
    CHECK_EQ_INT(tl_io_pwrite(fd, data, LEN, OFF, true), -EIO);
    CHECK(strstr(tl_last_error(), "fdatasync") != NULL);
    CHECK(strstr(tl_last_error(), "offset 100") != NULL);
    CHECK_EQ_INT(count('D'), 1);

    reset();
    plan(ACT_REAL);
    plan(-EINTR);
    CHECK_OK(tl_io_pwrite(fd, data, LEN, OFF, true));
    CHECK_EQ_INT(count('D'), 2);
    CHECK_EQ_INT(events[n_events - 1].result, 0);

    reset();
    plan(-EIO);
    CHECK_EQ_INT(tl_io_fdatasync(fd), -EIO);
    reset();
    CHECK_OK(tl_io_fdatasync(fd));
    CHECK_EQ_INT(count('D'), 1);
    reset();
    CHECK_OK(tl_io_fsync(fd));
    CHECK_EQ_INT(count('S'), 1);
    close(fd);

    reset();
    CHECK_OK(tl_io_sync_dir(dir));
    CHECK_EQ_INT(count('S'), 1);
    reset();
    plan(-EIO);
    CHECK_EQ_INT(tl_io_sync_dir(dir), -EIO);
    CHECK(strstr(tl_last_error(), dir) != NULL);
}

/* A batch of reads goes through io_uring, not through the wrapped calls. */
static void test_read_batch(const char *dir)
{
    int fd = open_file(dir, "reads");
    reset();
    CHECK_OK(tl_io_pwrite(fd, data, LEN, 0, false));
    static uint8_t a[100], b[200];
    struct tl_io_req reqs[2] = {{.fd = fd, .buf = a, .len = sizeof a, .off = 10},
                                {.fd = fd, .buf = b, .len = sizeof b, .off = LEN - 50}};
    reset();
    CHECK_OK(tl_io_pread_batch(reqs, 2));
    CHECK_EQ_INT(reqs[0].res, sizeof a);
    CHECK_EQ_INT(reqs[1].res, 50); /* end of file */
    CHECK(memcmp(a, data + 10, sizeof a) == 0);
    CHECK(memcmp(b, data + LEN - 50, 50) == 0);
    CHECK_EQ_INT(n_events, 0);
    close(fd);
}

int main(void)
{
    test_require_uring();
    for (size_t i = 0; i < LEN; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    char *dir = test_tmpdir("uring-io");
    test_write_sync_resumes(dir);
    test_write_without_sync(dir);
    test_write_errors(dir);
    test_sync_errors(dir);
    test_read_batch(dir);
    test_rmdir(dir);
    free(dir);
    printf("test_uring_io: ok\n");
    return 0;
}
