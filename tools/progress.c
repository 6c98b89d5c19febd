/*
 * progress.c - progress on stderr for tallyctl's long operations, and byte formatting.
 *
 * On a terminal the bar is one line redrawn in place ("\r"), at most every CTL_REDRAW_MS, and
 * once more at the end; elsewhere (a pipe, a log file, a test) a plain line is
 * printed each time another tenth of the way is done, so logs stay short.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "tallyctl.h"

#define CTL_BAR_WIDTH 30
#define CTL_REDRAW_MS 100

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ctl_format_bytes(char *out, size_t cap, uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n < 1024) {
        snprintf(out, cap, "%llu B", (unsigned long long)n);
        return;
    }
    double d = (double)n / 1024;
    size_t u = 0;
    while (d >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        d /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", d, units[u]);
}

void ctl_print_escaped(FILE *f, const uint8_t *p, size_t n, size_t max)
{
    size_t shown = n < max ? n : max;
    for (size_t i = 0; i < shown; i++) {
        if (p[i] == '"' || p[i] == '\\')
            fprintf(f, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            fputc(p[i], f);
        else
            fprintf(f, "\\x%02x", p[i]);
    }
    if (shown < n)
        fputs("...", f);
}

void ctl_progress_init(struct ctl_progress *p, const char *label)
{
    p->label = label;
    p->tty = isatty(STDERR_FILENO);
    p->drawn = false;
    p->last_tenth = -1;
    p->last_permille = -1;
    p->last_draw_ms = 0;
}

void ctl_progress_update(struct ctl_progress *p, uint64_t done, uint64_t total)
{
    if (total == 0)
        return; /* not known yet */
    if (done > total)
        done = total;
    int permille = (int)((double)done * 1000.0 / (double)total);
    char d[32], t[32];
    ctl_format_bytes(d, sizeof d, done);
    ctl_format_bytes(t, sizeof t, total);
    if (!p->tty) {
        int tenth = permille / 100;
        if (tenth <= p->last_tenth)
            return;
        p->last_tenth = tenth;
        fprintf(stderr, "%s: %d%% (%s of %s)\n", p->label, tenth * 10, d, t);
        return;
    }
    int64_t now = mono_ms();
    bool finished = done == total && permille != p->last_permille;
    if (p->drawn && !finished && now - p->last_draw_ms < CTL_REDRAW_MS)
        return;
    p->last_permille = permille;
    p->last_draw_ms = now;
    char bar[CTL_BAR_WIDTH + 1];
    int filled = permille * CTL_BAR_WIDTH / 1000;
    for (int i = 0; i < CTL_BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[CTL_BAR_WIDTH] = '\0';
    fprintf(stderr, "\r\033[K%s [%s] %5.1f%%  %s of %s", p->label, bar, permille / 10.0, d, t);
    fflush(stderr);
    p->drawn = true;
}

void ctl_progress_clear(struct ctl_progress *p)
{
    if (p->tty && p->drawn) {
        fputs("\r\033[K", stderr);
        p->drawn = false;
        p->last_permille = -1; /* redraw at the next update */
    }
}

void ctl_progress_end(struct ctl_progress *p)
{
    if (p->tty && p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}

void ctl_progress_cb(void *arg, uint64_t done, uint64_t total)
{
    ctl_progress_update(arg, done, total);
}
