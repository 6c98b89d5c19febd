/*
 * windowed_counter.c - libtally example: counts over sliding time windows with WINCRBY and
 * WGET, the question a fraud system asks ("how many sign-ups from this IP in the last hour?").
 *
 * Records sign-ups from one IP at chosen times (AT, in Unix milliseconds) over the last two
 * hours, reading the 5-minute, 1-hour and 1-day sums as it goes, then asks WGET for the same
 * windows as of now and pipelines a batch of plain increments.
 *
 * Build against the installed library: cc windowed_counter.c $(pkg-config --cflags --libs tally)
 * Run: ./windowed_counter [host] [port]   (default 127.0.0.1 6380)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <tally.h>

#define MINUTE_MS 60000LL
#define BATCH     100

static int fail(tally_ctx *ctx)
{
    fprintf(stderr, "windowed_counter: %s\n", ctx ? tally_errstr(ctx) : "out of memory");
    tally_free(ctx);
    return 1;
}

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : TALLY_DEFAULT_PORT;
    tally_ctx *ctx = tally_connect(host, port);
    if (!ctx || tally_errcode(ctx) != 0)
        return fail(ctx);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long now_ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    long long start = now_ms / MINUTE_MS * MINUTE_MS - 120 * MINUTE_MS;
    char key[64];
    snprintf(key, sizeof key, "signups:ip:203.0.113.7:%lld", now_ms);

    /* Sign-ups 120, 90, 30 and 2 minutes ago: 1, 2, 3 and 4 of them. */
    static const int minutes[] = {0, 30, 90, 118};
    const char *windows[] = {"5m", "1h", "1d"};
    int64_t sums[3];
    for (int i = 0; i < 4; i++) {
        long long at = start + minutes[i] * MINUTE_MS;
        if (tally_wincrby(ctx, key, strlen(key), i + 1, at, NULL, 3, windows, sums) != 0)
            return fail(ctx);
        printf("+%d at minute %3d: last 5m %lld, last 1h %lld, last 1d %lld\n", i + 1, minutes[i],
               (long long)sums[0], (long long)sums[1], (long long)sums[2]);
    }
    if (tally_wget(ctx, key, strlen(key), 3, windows, TALLY_NOW, sums) != 0)
        return fail(ctx);
    printf("now: last 5m %lld, last 1h %lld, last 1d %lld\n", (long long)sums[0],
           (long long)sums[1], (long long)sums[2]);
    int ok = sums[0] == 4 && sums[1] == 7 && sums[2] == 10;

    /* Pipelining: many increments sent at once, then their replies read in order. */
    for (int i = 0; i < BATCH; i++)
        if (tally_append_command(ctx, "WINCRBY %s 1", key) != 0)
            return fail(ctx);
    for (int i = 0; i < BATCH; i++) {
        tally_reply *r;
        if (tally_get_reply(ctx, &r) != 0)
            return fail(ctx);
        if (r->type == TALLY_REPLY_ERROR) {
            fprintf(stderr, "windowed_counter: WINCRBY %s: %s\n", key, r->str);
            ok = 0;
        }
        tally_reply_free(r);
    }
    if (tally_wget(ctx, key, strlen(key), 1, windows, TALLY_NOW, sums) != 0)
        return fail(ctx);
    printf("after %d pipelined increments: last 5m %lld\n", BATCH, (long long)sums[0]);
    ok = ok && sums[0] == 4 + BATCH;
    tally_free(ctx);
    return ok ? 0 : 1;
}
