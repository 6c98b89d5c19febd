/*
 * testutil.h - what every test program shares: assertions that print the failing values,
 * temporary directories, and the skip (exit 77) when io_uring is not available.
 */
#ifndef TL_TESTUTIL_H
#define TL_TESTUTIL_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tallystore.h"
#include "uring_io.h"

#define TEST_SKIP 77

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__,      \
                    #cond, tl_last_error());                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld (last error: %s)\n", __FILE__, \
                    __LINE__, #a, _a, #b, _b, tl_last_error());                                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Asserts a call returned 0 (or a non-negative result), printing the error otherwise. */
#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        long long _rc = (long long)(call);                                                         \
        if (_rc < 0) {                                                                             \
            fprintf(stderr, "%s:%d: %s failed: %lld %s: %s\n", __FILE__, __LINE__, #call, _rc,     \
                    tl_strerror((int)_rc), tl_last_error());                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Exits 77 (automake's SKIP) when io_uring cannot be used here. */
static inline void test_require_uring(void)
{
    if (tl_uring_probe() != 0) {
        fprintf(stderr, "SKIP: %s\n", tl_last_error());
        exit(TEST_SKIP);
    }
}

/* A fresh directory under $TMPDIR (or /tmp); removed by test_rmdir. */
static inline char *test_tmpdir(const char *name)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    if (!path)
        exit(1);
    snprintf(path, 4096, "%s/tally-%s-XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(path)) {
        fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

static inline void test_rmdir(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

/* A small deterministic generator (splitmix64), so that failures replay from their seed. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
