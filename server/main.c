/*
 * main.c - tallyd's entry point: settings, the engine, the network threads, and shutdown.
 *
 *     tallyd [CONFIG_FILE] [--config FILE] [--port N] [--dir DIR] [--NAME VALUE ...]
 *
 * Settings come from the defaults, then the config file, then each --name value (or
 * --name=value) in order, so the command line wins. Then the engine opens the data directory
 * (replaying its WAL), the network workers start (net.c), and the main thread sleeps until it is
 * told to stop.
 *
 * Stopping: SIGTERM, SIGINT and the SHUTDOWN command all write to one eventfd that the main
 * thread reads (the signal handler only does that write, which is async-signal-safe). SIGTERM
 * and SIGINT are blocked in every other thread: they are blocked here before any thread starts
 * and unblocked in the main thread only. The main thread then stops the network (clients get
 * their pending replies, briefly), and closes the engine, which syncs the WAL. A second SIGINT
 * during shutdown exits at once, as Redis does; acknowledged writes are in the WAL already.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* File descriptors kept for the engine (WAL, manifest, open tables) beyond one per client;
 * maxclients is lowered to fit the limit the system grants, as Redis does. */
#define TL_MAIN_RESERVED_FDS 1024
#define TL_MAIN_MIN_CLIENTS  16

struct tl_server *tl_srv;
static struct tl_server server;

static int shutdown_fd = -1;
static volatile sig_atomic_t signal_received;

/* The engine's clock: the command's time on network threads, the clock elsewhere. */
static int64_t engine_clock(void *arg)
{
    (void)arg;
    return tl_now_ms();
}

void tl_server_request_shutdown(void)
{
    atomic_store(&tl_srv->shutting_down, true);
    uint64_t one = 1;
    if (write(shutdown_fd, &one, sizeof(one)) < 0) {
        /* Only fails when the counter is full: a wake-up is already pending. */
    }
}

static void on_signal(int sig)
{
    static const char msg[] = "tallyd: second SIGINT during shutdown, exiting now\n";
    if (signal_received && sig == SIGINT) {
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
            /* exiting anyway */
        }
        _exit(1);
    }
    signal_received = sig;
    uint64_t one = 1;
    if (write(shutdown_fd, &one, sizeof(one)) < 0) {
        /* a wake-up is already pending */
    }
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: tallyd [CONFIG_FILE] [--config FILE] [--NAME VALUE ...]\n"
                 "       tallyd --help | --version\n"
                 "\n"
                 "tallyd is Tally's Redis-protocol server: a counter database on an LSM engine.\n"
                 "Settings come from the defaults, then the config file (redis.conf syntax: one\n"
                 "\"name value\" per line), then --name value options, which win.\n"
                 "Example: tallyd --port 6380 --dir ./data --fsync always\n"
                 "\n");
    tl_config_print_help(out);
}

/* Applies the command line over cfg. Returns 0, 1 after --help or --version (exit 0), or -1
 * after printing an error. */
static int parse_args(int argc, char **argv, struct tl_config *cfg, char *config_file,
                      size_t config_file_cap)
{
    char err[512];
    config_file[0] = '\0';
    /* First the config file: it must be read before the options that override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
            printf("tallyd %s\n", TL_VERSION_STRING);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tallyd: --config needs a file name\n");
                return -1;
            }
            snprintf(config_file, config_file_cap, "%s", argv[++i]);
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            snprintf(config_file, config_file_cap, "%s", argv[i] + 9);
        } else if (i == 1 && argv[i][0] != '-') {
            snprintf(config_file, config_file_cap, "%s", argv[i]); /* as redis-server */
        } else if (strncmp(argv[i], "--", 2) == 0 && !strchr(argv[i], '=')) {
            i++; /* skip the value of --name value */
        }
    }
    if (config_file[0] && tl_config_load_file(cfg, config_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0 || (i == 1 && arg[0] != '-'))
            continue;
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(stderr, "tallyd: unexpected argument '%s' (tallyd --help shows usage)\n", arg);
            return -1;
        }
        char name[128];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "tallyd: %s needs a value\n", arg);
                return -1;
            }
            snprintf(name, sizeof(name), "%s", arg + 2);
            value = argv[++i];
        }
        if (tl_config_set(cfg, name, value, err, sizeof(err)) != 0) {
            fprintf(stderr, "tallyd: command line: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* Raises the open-files limit for maxclients plus the engine's reserve, or lowers maxclients
 * to what the system grants. */
static void adjust_fd_limit(struct tl_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)cfg->maxclients + TL_MAIN_RESERVED_FDS;
    if (rl.rlim_cur >= want)
        return;
    rlim_t grant = want;
    if (rl.rlim_max != RLIM_INFINITY && grant > rl.rlim_max)
        grant = rl.rlim_max;
    rl.rlim_cur = grant;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur >= want)
        return;
    long long fit = (long long)rl.rlim_cur - TL_MAIN_RESERVED_FDS;
    if (fit < TL_MAIN_MIN_CLIENTS)
        fit = (long long)rl.rlim_cur / 2;
    if (fit < 1)
        fit = 1;
    tl_log(TL_LOG_WARNING,
           "The open files limit is %llu (ulimit -n); maxclients lowered from %d to %lld. "
           "Raise the limit to serve more clients.",
           (unsigned long long)rl.rlim_cur, cfg->maxclients, fit);
    cfg->maxclients = (int)fit;
}

static int init_server(struct tl_server *s, const struct tl_config *cfg, const char *config_file)
{
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    /* INFO shows the absolute path, as Redis does. */
    char abs_path[PATH_MAX];
    if (config_file[0] && realpath(config_file, abs_path))
        config_file = abs_path;
    snprintf(s->config_file, sizeof(s->config_file), "%s", config_file);
    s->start_ms = tl_now_ms();
    atomic_init(&s->next_client_id, 1);

    unsigned char rnd[20];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* No entropy source: the run id only has to differ between runs. */
        uint64_t seed = (uint64_t)s->start_ms ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(rnd); i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            rnd[i] = (unsigned char)(seed >> 56);
        }
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(s->run_id + 2 * i, 3, "%02x", rnd[i]);

    pthread_mutex_init(&s->cfg_lock, NULL);
    pthread_mutex_init(&s->clients_lock, NULL);
    pthread_mutex_init(&s->scan_lock, NULL);
    pthread_mutex_init(&s->slowlog_lock, NULL);
    /* Writer-preferring, so a waiting EXEC is not starved by a stream of ordinary commands
     * (which must then never take the lock shared twice in one thread). */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&s->exec_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc == 0 ? 0 : -rc;
}

static int open_engine(struct tl_server *s)
{
    struct tl_options o;
    tl_options_init(&o);
    o.fsync = s->cfg.fsync;
    o.clock_ms = engine_clock;
    o.memtable_bytes = (size_t)s->cfg.memtable_bytes;
    o.block_cache_bytes = (size_t)s->cfg.block_cache_bytes;
    o.block_size_bytes = (size_t)s->cfg.block_size_bytes;
    o.compression = (enum tl_compression)s->cfg.compression;
    o.bottom_compression = (enum tl_compression)s->cfg.bottom_compression;
    o.max_value_bytes = (size_t)s->cfg.max_value_bytes;
    int64_t t0 = tl_now_ms();
    int rc = tl_db_open(s->cfg.dir, &o, &s->db);
    if (rc < 0) {
        const char *why = tl_last_error()[0] ? tl_last_error() : tl_strerror(rc);
        tl_log(TL_LOG_WARNING, "Cannot open the database in %s: %s", s->cfg.dir, why);
        /* Also on stderr when the log goes to a file: the user starting tallyd sees why. */
        if (s->cfg.logfile[0])
            fprintf(stderr, "tallyd: cannot open the database in %s: %s\n", s->cfg.dir, why);
        if (rc == TL_ENOURING)
            fprintf(stderr, "tallyd: io_uring is required; see the message above\n");
        return rc;
    }
    tl_log(TL_LOG_NOTICE, "DB loaded from %s: %.3f seconds", s->cfg.dir,
           (double)(tl_now_ms() - t0) / 1000.0);
    char err[512];
    if (tl_window_init(s->db, &s->cfg, err, sizeof err) < 0) {
        tl_log(TL_LOG_WARNING, "%s", err);
        if (s->cfg.logfile[0])
            fprintf(stderr, "tallyd: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

/* The main thread's wait: until a signal or SHUTDOWN writes the eventfd. */
static void wait_for_shutdown(void)
{
    uint64_t v;
    while (read(shutdown_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    if (signal_received == SIGINT)
        tl_log(TL_LOG_WARNING, "Received SIGINT scheduling shutdown...");
    else if (signal_received == SIGTERM)
        tl_log(TL_LOG_WARNING, "Received SIGTERM scheduling shutdown...");
    else
        tl_log(TL_LOG_WARNING, "User requested shutdown...");
    atomic_store(&tl_srv->shutting_down, true);
}

/*
 * glibc gives threads that allocate their own malloc arenas, up to 8 per CPU. tallyd's threads
 * all allocate (workers fill the block cache, flush and compaction build tables and free them),
 * and memory freed in one arena is not reused by threads of another: it stays resident. On the
 * benchmark machine (2 CPUs), 10M counters loaded and served settled at 192-207 MiB of RSS with
 * glibc's default and 160-164 MiB with 2 arenas, loading and serving no slower. So: one arena
 * per CPU, at least 2, unless MALLOC_ARENA_MAX in the environment says otherwise. Returns the
 * limit set, or 0 when the environment's is left alone. Runs before any thread starts.
 */
static int limit_malloc_arenas(void)
{
    if (getenv("MALLOC_ARENA_MAX"))
        return 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int arenas = cpus < 2 ? 2 : cpus > 1024 ? 1024 : (int)cpus;
    return mallopt(M_ARENA_MAX, arenas) == 1 ? arenas : 0;
}

int main(int argc, char **argv)
{
    int arenas = limit_malloc_arenas();
    static char config_file[4096];
    struct tl_config cfg;
    tl_config_defaults(&cfg);
    int rc = parse_args(argc, argv, &cfg, config_file, sizeof(config_file));
    if (rc != 0)
        return rc > 0 ? 0 : 1;

    if (cfg.logfile[0]) {
        int fd = open(cfg.logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "tallyd: can't open the log file %s: %s\n", cfg.logfile,
                    strerror(errno));
            return 1;
        }
        close(fd);
    }
    tl_log_open(cfg.logfile, cfg.loglevel);
    tl_log(TL_LOG_NOTICE, "oO0OoO0OoO0Oo Tally is starting oO0OoO0OoO0Oo");
    tl_log(TL_LOG_NOTICE, "tallyd version=%s, bits=%d, pid=%d, just started", TL_VERSION_STRING,
           (int)(sizeof(void *) * 8), (int)getpid());
    if (arenas)
        tl_log(TL_LOG_VERBOSE, "malloc: at most %d arenas (MALLOC_ARENA_MAX overrides)", arenas);
    if (config_file[0])
        tl_log(TL_LOG_NOTICE, "Configuration loaded from %s", config_file);
    else
        tl_log(TL_LOG_NOTICE, "No config file given, using the defaults and the command line "
                              "(tallyd --config /path/to/tallyd.conf to name one)");

    shutdown_fd = eventfd(0, EFD_CLOEXEC);
    if (shutdown_fd < 0) {
        tl_log(TL_LOG_WARNING, "eventfd: %s", strerror(errno));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* A write past the file size limit (ulimit -f) fails with EFBIG, reported like any write
     * error, instead of ending the process (the engine writes in the caller's thread). */
    sigaction(SIGXFSZ, &sa, NULL);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Blocked now, so every thread started from here on inherits the block. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    adjust_fd_limit(&cfg);
    tl_srv = &server;
    if (init_server(&server, &cfg, config_file) != 0) {
        tl_log(TL_LOG_WARNING, "Cannot initialize the server's locks");
        return 1;
    }
    if (open_engine(&server) != 0)
        return 1;
    if (tl_net_start(&server) != 0) {
        tl_log(TL_LOG_WARNING, "Cannot start the network; exiting");
        tl_db_close(server.db);
        return 1;
    }
    tl_log(TL_LOG_NOTICE, "Server initialized (fsync %s)",
           cfg.fsync == TL_FSYNC_ALWAYS ? "always"
           : cfg.fsync == TL_FSYNC_NO   ? "no"
                                        : "everysec");
    tl_log(TL_LOG_NOTICE, "Ready to accept connections tcp on port %d", server.cfg.port);

    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    wait_for_shutdown();

    tl_net_stop(&server);
    tl_log(TL_LOG_NOTICE, "Syncing the WAL and closing the database...");
    /* A running TALLY COMPACT is cancelled, and its thread joined, before the engine goes. */
    tl_db_stop(server.db);
    tl_admin_shutdown();
    rc = tl_db_close(server.db);
    server.db = NULL;
    if (rc < 0) {
        tl_log(TL_LOG_WARNING, "Closing the database failed: %s", tl_last_error());
        return 1;
    }
    free(server.clients);
    server.clients = NULL;
    tl_log(TL_LOG_WARNING, "tallyd is now ready to exit, bye bye...");
    return 0;
}
