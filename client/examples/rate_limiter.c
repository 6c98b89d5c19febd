/*
 * rate_limiter.c - libtally example: a rate limiter with CL.THROTTLE.
 *
 * Allows each user a burst of 5 requests, then 10 a minute, and tries 8 requests in a row for
 * one user: the first 6 pass (the burst and one more: the limit is max_burst + 1), the rest
 * are refused with the time after which to retry.
 *
 * Build against the installed library: cc rate_limiter.c $(pkg-config --cflags --libs tally)
 * Run: ./rate_limiter [host] [port]   (default 127.0.0.1 6380)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tally.h>

#define MAX_BURST  5
#define PER_PERIOD 10
#define PERIOD_S   60
#define REQUESTS   8

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : TALLY_DEFAULT_PORT;
    struct tally_options opts = {
        .host = host, .port = port, .connect_timeout_ms = 1000, .command_timeout_ms = 1000};
    tally_ctx *ctx = tally_connect_with(&opts);
    if (!ctx || tally_errcode(ctx) != 0) {
        fprintf(stderr, "rate_limiter: %s\n", ctx ? tally_errstr(ctx) : "out of memory");
        tally_free(ctx);
        return 1;
    }

    /* One limiter per user; a fresh key each run so the output is always the same. */
    char key[64];
    snprintf(key, sizeof key, "ratelimit:user42:%lld", (long long)time(NULL));
    int allowed = 0;
    for (int i = 1; i <= REQUESTS; i++) {
        struct tally_throttle_result t;
        if (tally_throttle(ctx, key, strlen(key), MAX_BURST, PER_PERIOD, PERIOD_S, 1, &t) != 0) {
            fprintf(stderr, "rate_limiter: %s\n", tally_errstr(ctx));
            tally_free(ctx);
            return 1;
        }
        if (t.limited) {
            printf("request %d: refused, retry after %lld s (limit %lld)\n", i,
                   (long long)t.retry_after_s, (long long)t.limit);
        } else {
            allowed++;
            printf("request %d: allowed, %lld left\n", i, (long long)t.remaining);
        }
    }
    printf("%d of %d requests allowed\n", allowed, REQUESTS);
    tally_free(ctx);
    return allowed == MAX_BURST + 1 ? 0 : 1;
}
