/*
 * tallyctl.c - the admin tool's entry point: global options (-h, -p, -a), the usage text, and
 * the choice of subcommand. See tallyctl.8 for the manual and README.md for the files.
 *
 * Exit status: 0 success, 1 failure (or problems found by verify), 2 a usage error.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tallyctl.h"
#include "tallystore.h"

static const char usage_text[] =
    "usage: tallyctl [-h HOST] [-p PORT] [-a PASSWORD] COMMAND [ARGS]\n"
    "\n"
    "On a running tallyd (default 127.0.0.1:6380):\n"
    "  stats                                  levels, memtables, compactions, block cache\n"
    "  compact [--level N] [--range FROM TO] [--wait]\n"
    "                                         start a compaction; --wait shows its progress\n"
    "  compact --status                       the last compaction's progress\n"
    "  checkpoint DEST                        a consistent copy in the new directory DEST\n"
    "\n"
    "On a data directory (the server stopped) or a file:\n"
    "  compact --dir DIR [--level N]          compact every level (or level N) of DIR\n"
    "  verify --dir DIR                       check every table's blocks and the manifest\n"
    "  manifest --dir DIR                     the levels and tables the manifest lists\n"
    "  sst dump FILE [--keys] [--limit N]     a table's properties, and its entries\n"
    "\n"
    "  --help                                 this text\n"
    "Exit status: 0 success, 1 failure or problems found, 2 usage error.\n";

int ctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tallyctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    fputs(usage_text, stderr);
    return CTL_EXIT_USAGE;
}

bool ctl_parse_count(const char *opt, const char *s, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) {
        ctl_usage_error("%s needs an integer from 0 to %lld, not '%s'", opt, max, s);
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    struct ctl_opts o = {.host = CTL_DEFAULT_HOST, .port = CTL_DEFAULT_PORT};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return CTL_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("tallyctl %s\n", TL_VERSION_STRING);
            return CTL_EXIT_OK;
        }
        if (strcmp(a, "-h") != 0 && strcmp(a, "-p") != 0 && strcmp(a, "-a") != 0)
            return ctl_usage_error("unknown option '%s'", a);
        if (i + 1 >= argc)
            return ctl_usage_error("option %s needs a value", a);
        const char *v = argv[++i];
        if (a[1] == 'h') {
            o.host = v;
        } else if (a[1] == 'a') {
            o.password = v;
        } else {
            long long port;
            if (!ctl_parse_count("-p", v, 65535, &port))
                return CTL_EXIT_USAGE;
            if (port == 0)
                return ctl_usage_error("-p needs a port from 1 to 65535, not 0");
            o.port = (int)port;
        }
    }
    if (i >= argc)
        return ctl_usage_error("no command given");
    /* Offline compaction and checkpoints write files: past a file size limit, an error. */
    signal(SIGXFSZ, SIG_IGN);
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "stats") == 0)
        return ctl_cmd_stats(&o, sub_argc, sub_argv);
    if (strcmp(cmd, "compact") == 0)
        return ctl_cmd_compact(&o, sub_argc, sub_argv);
    if (strcmp(cmd, "checkpoint") == 0)
        return ctl_cmd_checkpoint(&o, sub_argc, sub_argv);
    if (strcmp(cmd, "verify") == 0)
        return ctl_cmd_verify(sub_argc, sub_argv);
    if (strcmp(cmd, "sst") == 0)
        return ctl_cmd_sst(sub_argc, sub_argv);
    if (strcmp(cmd, "manifest") == 0)
        return ctl_cmd_manifest(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return CTL_EXIT_OK;
    }
    return ctl_usage_error("unknown command '%s'", cmd);
}
