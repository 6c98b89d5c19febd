/*
 * net.c - tallyd's networking: worker threads, each driving its own io_uring ring (DESIGN.md
 * section 3). No epoll, no thread per connection.
 *
 * A worker owns: a ring (SINGLE_ISSUER and DEFER_TASKRUN where the kernel has them), one
 * listening socket per bind address (SO_REUSEPORT: the kernel spreads connections over the
 * workers), a ring of provided receive buffers, an eventfd, and its clients. A client belongs
 * to the worker that accepted it for its whole life, so its state needs no lock.
 *
 * Operations kept in flight, each tagged in its user_data:
 *   accept   multishot, one per listening socket; re-armed when it ends;
 *   recv     multishot per client, into the provided-buffer ring (IOSQE_BUFFER_SELECT); the
 *            bytes are parsed at once and the buffer goes back to the ring; re-armed when the
 *            kernel ends it (no IORING_CQE_F_MORE), as it does when the ring runs dry;
 *   send     at most one per client: the client's whole pending output (c->out is swapped with
 *            an empty buffer, so commands keep appending while the kernel sends); a partial
 *            send is continued from where it stopped;
 *   read     of the eventfd, always armed: other threads write it to wake the worker (the WAL
 *            commit thread, CLIENT KILL, shutdown);
 *   timeout  a tick every TL_NET_TICK_MS, for idle timeouts and the shutdown deadline.
 * One loop turn: handle every completion, send held replies whose WAL record has arrived, then
 * one io_uring_submit_and_wait, which submits what the turn queued and sleeps for the next.
 *
 * Input: bytes are parsed straight from the receive buffer when nothing is buffered (only an
 * incomplete tail is copied into c->query) and each request is dispatched at once; the keys of
 * the next requests are prefetched meanwhile (look_ahead). A protocol
 * error is answered with the parser's error line, then the connection is closed. Limits:
 * client-query-buffer-limit on c->query; client-output-buffer-limit on the replies held,
 * checked after every command; maxclients and protected mode at accept; timeout at the tick.
 *
 * Durability: a command that writes sets c->wait_seq to its WAL sequence number. Before a
 * client's replies are sent, the WAL must have that record written (fsync everysec and no: it
 * survives kill -9) or on disk (fsync always). If not yet, the client is parked on the worker's
 * list, the worker's has_parked flag is raised, and the worker goes on with other clients. The
 * commit thread calls net_commit_notify after each advance; it writes the eventfd of the
 * workers whose flag is up (at most once until the worker has read it); the order of their
 * atomic operations (flush_parked) makes sure a wake-up is never lost.
 *
 * Closing: a client is closed by cancelling its operations; its memory is freed when the last
 * of them has completed (nothing the kernel still holds refers to freed memory), and only then
 * is its fd closed (no queued operation can name a reused fd number).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Ring sizes: submissions queued per turn before an early submit, completions the kernel can
 * hold (it keeps more in its overflow list rather than drop them). */
#define TL_NET_SQ_ENTRIES 1024
#define TL_NET_CQ_ENTRIES 8192
/* Provided receive buffers per worker (a power of two, at most 32768) and their size: 8 MiB
 * per worker. A buffer is returned to the ring as soon as its bytes are parsed or copied. */
#define TL_NET_RECV_BUF_COUNT 1024
#define TL_NET_RECV_BUF_BYTES 8192
#define TL_NET_BUF_GROUP      0
/* Completions taken from the ring at once, and batches handled per turn before the turn
 * submits what it has queued. */
#define TL_NET_CQE_BATCH       256
#define TL_NET_CQE_BATCHES_MAX 16
#define TL_NET_LISTEN_BACKLOG  1024
#define TL_NET_MAX_BIND        8 /* addresses in the bind setting */
#define TL_NET_MAX_WORKERS     128
#define TL_NET_TICK_MS         100
#define TL_NET_IDLE_SCAN_MS    1000 /* how often idle clients are looked for */
/* Shutdown: how long clients get to receive their pending replies, and how long the worker
 * waits for its cancelled operations to complete before it tears the ring down. */
#define TL_NET_STOP_GRACE_MS 2000
#define TL_NET_DRAIN_MS      1000
/* A client parked this long is checked with tl_db_wait, which reports a WAL that stopped (an
 * I/O error) instead of leaving the client waiting for ever. */
#define TL_NET_PARK_CHECK_MS 10000
/* A killed client whose pending replies do not leave within this time is closed anyway. */
#define TL_NET_KILL_GRACE_MS 1000
/* Query and output buffers are freed when they empty past this capacity, so a client that
 * once sent or received something large does not keep the memory. */
#define TL_NET_KEEP_BUF_BYTES (64 * 1024)
/* The tries at getting a submission slot (each submits what is queued) before giving up. */
#define TL_NET_SQE_TRIES 8

/* user_data: a client pointer with the operation in its low bits, or a worker-level tag
 * (below TL_NET_UD_CLIENT_MIN, which no heap pointer is). */
enum { OP_RECV = 1, OP_SEND = 2, OP_MASK = 7 };
enum {
    UD_IGNORE = 1, /* cancellations */
    UD_EVENTFD = 2,
    UD_TICK = 3,
    UD_ACCEPT = 16, /* + listener index */
    TL_NET_UD_CLIENT_MIN = 4096,
};

struct net_client {
    struct tl_client c; /* first: c.net points back here */
    struct tl_worker *w;
    struct net_client *prev, *next;           /* the worker's clients */
    struct net_client *park_prev, *park_next; /* the worker's parked clients */
    bool parked;
    int64_t parked_ms;     /* when it was parked */
    bool closed;           /* cancellations issued; freed when no operation is left */
    bool recv_armed;       /* a multishot recv is in flight */
    bool send_inflight;    /* a send is in flight */
    struct tl_buf sending; /* the bytes of the send in flight */
    size_t sent;           /* of sending, already taken by the kernel */
    size_t need_bytes;     /* the parser needs at least this much in c->query */
    int64_t last_io_ms;
    int64_t kill_deadline_ms; /* 0, or when a killed client is closed even with replies left */
    _Atomic bool kill_requested;
    size_t reg_index; /* in tl_srv->clients */
};

/* Limits read from the configuration once per turn (CONFIG SET may change them). */
struct net_limits {
    struct tl_parse_limits parse;
    long long query_limit, output_limit;
    int maxclients, timeout_s;
    bool protected_mode, has_password;
};

struct tl_worker {
    int index;
    pthread_t thread;
    bool thread_started;
    struct io_uring ring;
    bool ring_ready;
    int listen_fds[TL_NET_MAX_BIND];
    bool accept_armed[TL_NET_MAX_BIND];
    int n_listen;
    bool accept_retry; /* an accept failed (out of fds): re-arm at the next tick */
    int efd;
    uint64_t efd_value;
    struct __kernel_timespec tick_ts;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *bufs;
    int recycled; /* buffers added to the ring since the last advance */

    struct net_client *clients, *parked;
    size_t n_clients;
    unsigned inflight; /* submissions whose last completion has not been seen */

    _Atomic bool has_parked;   /* the commit thread should wake this worker */
    _Atomic bool wake_pending; /* it did and the worker has not read the eventfd yet */
    _Atomic bool kill_pending; /* tl_client_kill marked one of its clients */
    _Atomic bool stop;         /* tl_net_stop asked it to finish */
    bool stopping, exiting;
    int64_t stop_deadline_ms;

    int64_t now_ms, last_idle_scan_ms;
    struct net_limits lim;
    uint64_t stat_in, stat_out; /* added to tl_srv's counters once per turn */
    int start_rc;
};

/* State shared by the workers and the threads that call into net.c. */
static struct {
    struct tl_server *s;
    _Atomic long connected;        /* clients open now, for maxclients */
    _Atomic bool notify_running;   /* net_commit_notify may touch the workers */
    _Atomic int notify_active;     /* calls of net_commit_notify under way */
    _Atomic uint64_t commit_epoch; /* advanced by each net_commit_notify (see flush_parked) */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    int started; /* workers that finished setting up, successfully or not */
} net = {
    .start_lock = PTHREAD_MUTEX_INITIALIZER,
    .start_cond = PTHREAD_COND_INITIALIZER,
};

static const char maxclients_reply[] = "-ERR max number of clients reached\r\n";
static const char protected_reply[] =
    "-DENIED tallyd is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from the "
    "loopback interface. If you want to connect from external computers to tallyd you may "
    "adopt one of the following solutions: 1) Just disable protected mode sending the command "
    "'CONFIG SET protected-mode no' from the loopback interface by connecting to tallyd from "
    "the same host the server is running, however MAKE SURE tallyd is not publicly accessible "
    "from internet if you do so. 2) Alternatively you can just disable the protected mode by "
    "editing the tallyd configuration file, and setting the protected-mode option to 'no', and "
    "then restarting the server. 3) If you started the server manually just for testing, "
    "restart it with the '--protected-mode no' option. 4) Set a password with the requirepass "
    "setting; clients then send AUTH. NOTE: You only need to do one of the above things in "
    "order for the server to start accepting connections from the outside.\r\n";

static void client_flush(struct tl_worker *w, struct net_client *nc);
static void close_client(struct tl_worker *w, struct net_client *nc);
static void maybe_free(struct tl_worker *w, struct net_client *nc);

/* ---- submissions ---------------------------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct tl_worker *w)
{
    for (int i = 0; i < TL_NET_SQE_TRIES; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (sqe) {
            w->inflight++;
            return sqe;
        }
        /* The queue is full: hand it to the kernel now rather than wait for the turn's end. */
        io_uring_submit(&w->ring);
    }
    /* The kernel takes every queued entry on submit; failing that many times means the ring
     * is broken, and the worker cannot go on without losing track of its clients. */
    tl_log(TL_LOG_WARNING, "io_uring submission queue stuck on worker %d; exiting", w->index);
    abort();
}

static uint64_t client_ud(struct net_client *nc, int op)
{
    return (uint64_t)(uintptr_t)nc | (uint64_t)op;
}

static void arm_accept(struct tl_worker *w, int i)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_multishot_accept(sqe, w->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT + (uint64_t)i);
    w->accept_armed[i] = true;
}

static void arm_eventfd(struct tl_worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_read(sqe, w->efd, &w->efd_value, sizeof(w->efd_value), 0);
    io_uring_sqe_set_data64(sqe, UD_EVENTFD);
}

static void arm_tick(struct tl_worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, UD_TICK);
}

static void arm_recv(struct tl_worker *w, struct net_client *nc)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_recv_multishot(sqe, nc->c.fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = TL_NET_BUF_GROUP;
    io_uring_sqe_set_data64(sqe, client_ud(nc, OP_RECV));
    nc->recv_armed = true;
}

static void start_send(struct tl_worker *w, struct net_client *nc)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_send(sqe, nc->c.fd, nc->sending.data + nc->sent, nc->sending.len - nc->sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, client_ud(nc, OP_SEND));
    nc->send_inflight = true;
}

static void cancel_op(struct tl_worker *w, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void wake_worker(struct tl_worker *w)
{
    uint64_t one = 1;
    /* Fails only if the counter would overflow, which a reader that keeps reading prevents;
     * a lost wake-up then costs at most one tick. */
    if (write(w->efd, &one, sizeof(one)) < 0)
        return;
}

/* ---- durability ----------------------------------------------------------------------------- */

/* Whether the WAL has reached seq as far as acknowledging a write requires. */
static bool seq_ready(uint64_t seq)
{
    if (seq == 0)
        return true;
    tl_db *db = net.s->db;
    uint64_t have =
        net.s->cfg.fsync == TL_FSYNC_ALWAYS ? tl_db_durable_seq(db) : tl_db_written_seq(db);
    return have >= seq;
}

/* Called by the WAL commit thread after each advance; must stay cheap. */
static void net_commit_notify(void *arg)
{
    (void)arg;
    atomic_fetch_add(&net.notify_active, 1);
    if (atomic_load(&net.notify_running)) {
        /* The WAL stored its new sequence number before this call; flush_parked explains
         * why a worker that misses this wake-up sees that number. */
        atomic_fetch_add(&net.commit_epoch, 1);
        for (int i = 0; i < net.s->n_workers; i++) {
            struct tl_worker *w = net.s->workers[i];
            if (atomic_load(&w->has_parked) && !atomic_exchange(&w->wake_pending, true))
                wake_worker(w);
        }
    }
    atomic_fetch_sub(&net.notify_active, 1);
}

static void park(struct tl_worker *w, struct net_client *nc)
{
    if (nc->parked)
        return;
    nc->parked = true;
    nc->parked_ms = w->now_ms;
    nc->park_prev = NULL;
    nc->park_next = w->parked;
    if (w->parked)
        w->parked->park_prev = nc;
    w->parked = nc;
}

static void unpark(struct tl_worker *w, struct net_client *nc)
{
    if (!nc->parked)
        return;
    if (nc->park_prev)
        nc->park_prev->park_next = nc->park_next;
    else
        w->parked = nc->park_next;
    if (nc->park_next)
        nc->park_next->park_prev = nc->park_prev;
    nc->parked = false;
    nc->park_prev = nc->park_next = NULL;
}

/* Sends the replies of parked clients whose WAL records have arrived. Run at the end of every
 * turn, before the worker may sleep. */
static void flush_parked(struct tl_worker *w)
{
    if (!w->parked) {
        if (atomic_load_explicit(&w->has_parked, memory_order_relaxed))
            atomic_store(&w->has_parked, false);
        return;
    }
    /* No lost wake-up. The commit thread: stores the sequence number, then (all seq_cst)
     * increments commit_epoch, loads has_parked, exchanges wake_pending. This worker: clears
     * wake_pending (when it reads the eventfd), stores has_parked, loads commit_epoch, then
     * reads the sequence number. If the commit thread saw has_parked false or wake_pending
     * true, its increment precedes this load in the single order of seq_cst operations, so
     * the load reads it (or a later one) and synchronizes with it: the sequence number
     * stored before the increment is visible below. */
    atomic_store(&w->has_parked, true);
    (void)atomic_load(&net.commit_epoch);
    struct net_client *next;
    for (struct net_client *nc = w->parked; nc; nc = next) {
        next = nc->park_next;
        if (seq_ready(nc->c.wait_seq)) {
            unpark(w, nc);
            client_flush(w, nc);
            maybe_free(w, nc);
        }
    }
    if (!w->parked)
        atomic_store(&w->has_parked, false);
}

/*
 * Under everysec and no, a reply waits only until its WAL record is in the kernel: rather than
 * wait for the commit thread to come round (and wake this worker), the worker writes the WAL
 * itself once per turn, for every record appended so far, as Redis writes its AOF before it
 * replies. This is a buffered write (no sync), so the worker is held for microseconds. Under
 * always the replies wait for the commit thread's fdatasync: parked, the worker serves others.
 */
static void write_parked(struct tl_worker *w)
{
    if (!w->parked || net.s->cfg.fsync == TL_FSYNC_ALWAYS)
        return;
    uint64_t max = 0;
    for (struct net_client *nc = w->parked; nc; nc = nc->park_next)
        if (nc->c.wait_seq > max)
            max = nc->c.wait_seq;
    if (max && !seq_ready(max) && tl_db_wait(net.s->db, max, TL_WAIT_WRITTEN) < 0)
        tl_log(TL_LOG_WARNING, "Worker %d: the WAL cannot be written (%s); replies wait", w->index,
               tl_last_error());
}

/* ---- the client registry -------------------------------------------------------------------- */

void tl_client_register(struct tl_client *c)
{
    struct tl_server *s = tl_srv;
    pthread_mutex_lock(&s->clients_lock);
    if (s->n_clients == s->cap_clients) {
        size_t cap = s->cap_clients ? s->cap_clients * 2 : 64;
        struct tl_client **p = realloc(s->clients, cap * sizeof(*p));
        if (!p) {
            /* Unlisted in CLIENT LIST, but served; unregister tolerates it. */
            pthread_mutex_unlock(&s->clients_lock);
            tl_log(TL_LOG_WARNING, "out of memory listing client %s", c->addr);
            return;
        }
        s->clients = p;
        s->cap_clients = cap;
    }
    if (c->net)
        ((struct net_client *)c->net)->reg_index = s->n_clients;
    s->clients[s->n_clients++] = c;
    pthread_mutex_unlock(&s->clients_lock);
}

void tl_client_unregister(struct tl_client *c)
{
    struct tl_server *s = tl_srv;
    pthread_mutex_lock(&s->clients_lock);
    size_t i = c->net ? ((struct net_client *)c->net)->reg_index : 0;
    if (i >= s->n_clients || s->clients[i] != c) {
        for (i = 0; i < s->n_clients && s->clients[i] != c; i++)
            ;
    }
    if (i < s->n_clients) {
        struct tl_client *last = s->clients[--s->n_clients];
        s->clients[i] = last;
        if (last->net)
            ((struct net_client *)last->net)->reg_index = i;
    }
    pthread_mutex_unlock(&s->clients_lock);
}

/* The caller holds tl_srv->clients_lock (as CLIENT KILL does while it walks the list) or runs
 * on the client's own worker: either keeps the client from being freed meanwhile. */
void tl_client_kill(struct tl_client *c)
{
    struct net_client *nc = c->net;
    if (!nc)
        return;
    atomic_store(&nc->kill_requested, true);
    atomic_store(&nc->w->kill_pending, true);
    wake_worker(nc->w);
}

/* ---- clients -------------------------------------------------------------------------------- */

static void format_addr(const struct sockaddr_storage *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(buf, cap, "%s:%d", ip, port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(buf, cap, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, cap, "?:0");
    }
}

static bool is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Refuses a connection with an error line; the new socket's buffer is empty, so a
 * non-blocking send of a short line goes out whole. */
static void refuse(int fd, const char *reply, size_t len)
{
    if (send(fd, reply, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing to do: the connection is closed either way */
    }
    close(fd);
}

static void on_accept(struct tl_worker *w, int fd)
{
    struct sockaddr_storage peer, local;
    socklen_t plen = sizeof(peer), llen = sizeof(local);
    memset(&peer, 0, sizeof(peer));
    memset(&local, 0, sizeof(local));
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0 ||
        getsockname(fd, (struct sockaddr *)&local, &llen) < 0) {
        close(fd); /* the peer is already gone */
        return;
    }
    char addr[64];
    format_addr(&peer, addr, sizeof(addr));

    if (atomic_load(&net.connected) >= w->lim.maxclients) {
        refuse(fd, maxclients_reply, sizeof(maxclients_reply) - 1);
        atomic_fetch_add(&tl_srv->rejected_connections, 1);
        tl_log(TL_LOG_VERBOSE, "Refused %s: max number of clients reached", addr);
        return;
    }
    bool loopback = is_loopback(&peer);
    if (w->lim.protected_mode && !w->lim.has_password && !loopback) {
        refuse(fd, protected_reply, sizeof(protected_reply) - 1);
        tl_log(TL_LOG_VERBOSE,
               "Refused %s: protected mode is on and no requirepass is set "
               "(see the protected-mode setting)",
               addr);
        return;
    }

    struct net_client *nc = calloc(1, sizeof(*nc));
    if (!nc) {
        tl_log(TL_LOG_WARNING, "Out of memory accepting %s", addr);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    struct tl_client *c = &nc->c;
    c->id = atomic_fetch_add(&tl_srv->next_client_id, 1);
    c->fd = fd;
    c->worker = w;
    c->resp = 2;
    c->authenticated = !w->lim.has_password;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    format_addr(&local, c->laddr, sizeof(c->laddr));
    c->local = loopback;
    c->created_ms = c->last_cmd_ms = w->now_ms;
    c->net = nc;
    nc->w = w;
    nc->last_io_ms = w->now_ms;

    nc->next = w->clients;
    if (w->clients)
        w->clients->prev = nc;
    w->clients = nc;
    w->n_clients++;
    atomic_fetch_add(&net.connected, 1);
    atomic_fetch_add(&tl_srv->total_connections, 1);
    tl_client_register(c);
    arm_recv(w, nc);
    tl_log(TL_LOG_VERBOSE, "Accepted %s", addr);
}

/* Frees a closed client once the kernel holds nothing of it. */
static void maybe_free(struct tl_worker *w, struct net_client *nc)
{
    if (!nc->closed || nc->recv_armed || nc->send_inflight)
        return;
    if (nc->prev)
        nc->prev->next = nc->next;
    else
        w->clients = nc->next;
    if (nc->next)
        nc->next->prev = nc->prev;
    w->n_clients--;
    close(nc->c.fd);
    tl_multi_discard(&nc->c);
    tl_buf_free(&nc->c.query);
    tl_buf_free(&nc->c.out);
    tl_buf_free(&nc->sending);
    atomic_fetch_sub(&net.connected, 1);
    free(nc);
}

/* Closes a client now, dropping replies not yet sent. Like every function that a client's
 * handling calls, it does not free the client: the handler that runs for a completion or a
 * scan calls maybe_free when it is done with it. */
static void close_client(struct tl_worker *w, struct net_client *nc)
{
    if (nc->closed)
        return;
    nc->closed = true;
    nc->c.closing = true; /* resp.c drops any reply appended from now on */
    unpark(w, nc);
    tl_client_unregister(&nc->c);
    /* Ends the recv (it completes with 0) and a send stuck on a full socket buffer; the
     * cancellations make it certain. */
    shutdown(nc->c.fd, SHUT_RDWR);
    if (nc->recv_armed)
        cancel_op(w, client_ud(nc, OP_RECV));
    if (nc->send_inflight)
        cancel_op(w, client_ud(nc, OP_SEND));
}

/* The bytes of replies held for the client: not yet handed over, and in the send in flight. */
static size_t pending_output(const struct net_client *nc)
{
    return nc->c.out.len + (nc->sending.len - nc->sent);
}

/* Sends the client's pending replies, or parks it until their WAL records arrive, or closes
 * it when it asked to be closed after its replies and none are left. */
static void client_flush(struct tl_worker *w, struct net_client *nc)
{
    struct tl_client *c = &nc->c;
    if (nc->closed || nc->send_inflight)
        return;
    if (c->out.len == 0) {
        if (c->close_after_reply)
            close_client(w, nc);
        return;
    }
    if (!seq_ready(c->wait_seq)) {
        park(w, nc);
        return;
    }
    unpark(w, nc);
    /* Swap: the send owns the bytes, commands append to what was the send buffer. */
    struct tl_buf t = nc->sending;
    nc->sending = c->out;
    c->out = t;
    c->out.len = 0;
    nc->sent = 0;
    start_send(w, nc);
}

static void log_client_error(struct tl_worker *w, struct net_client *nc, const char *what)
{
    (void)w;
    tl_log(TL_LOG_VERBOSE, "Client id=%llu addr=%s: %s", (unsigned long long)nc->c.id, nc->c.addr,
           what);
}

/*
 * Lookahead over a pipeline: while one request runs, the keys of the next LOOKAHEAD requests
 * in the buffer have their memtable lookups prefetched, a stage further for each request run
 * (tl_db_prefetch: slot, then cell, then value; each key hashed once, when peeked), so the cache
 * misses of a pipeline's lookups overlap rather than follow one another. Requests are only peeked
 * (tl_peek_request); each is parsed when its turn comes, so a peek that disagrees with the parser
 * just ends the lookahead.
 */
#define LOOKAHEAD 3

struct lookahead {
    size_t next;  /* where the next request to peek starts */
    bool stopped; /* a request could not be peeked: no lookahead past it */
    int n;        /* peeked requests not yet run, oldest first */
    struct {
        size_t start;
        bool has_key;
        uint64_t hash; /* of its engine key (tl_db_prefetch_hash), computed once */
    } q[LOOKAHEAD];
};

/* The request at off is about to run: drops it from the queue, peeks ahead to refill it, and
 * moves every queued key one stage on (the newest starts at the slot). */
static void look_ahead(struct lookahead *la, struct tl_client *c, const char *buf, size_t len,
                       size_t off)
{
    if (la->n > 0 && la->q[0].start == off) {
        la->n--;
        memmove(&la->q[0], &la->q[1], (size_t)la->n * sizeof la->q[0]);
    } else if (la->n > 0 || la->next < off) {
        /* Past a request that could not be peeked, or the peek and the parser disagree:
         * start again from here. */
        la->n = 0;
        la->next = off;
        la->stopped = false;
    }
    if (la->next == off && !la->stopped) {
        /* Step over the request about to run. */
        const char *key;
        size_t klen, skip = tl_peek_request(buf + off, len - off, &key, &klen);
        la->next = off + skip;
        la->stopped = skip == 0;
    }
    while (!la->stopped && la->n < LOOKAHEAD && la->next < len) {
        const char *key;
        size_t klen, skip = tl_peek_request(buf + la->next, len - la->next, &key, &klen);
        if (skip == 0) {
            la->stopped = true;
            break;
        }
        int i = la->n++;
        la->q[i].start = la->next;
        la->q[i].has_key = tl_key_prefetch_hash(c, key, klen, &la->q[i].hash);
        la->next += skip;
    }
    /* The next request to run gets its value, the one after its cell, the newest its slot. */
    for (int i = 0; i < la->n; i++)
        if (la->q[i].has_key)
            tl_db_prefetch(tl_srv->db, la->q[i].hash,
                           (enum tl_prefetch_stage)(TL_PREFETCH_VALUE - i));
}

/* Parses and runs the requests in buf. Returns the bytes used; stops early when the client is
 * to be closed. */
static size_t run_requests(struct tl_worker *w, struct net_client *nc, const char *buf, size_t len)
{
    struct tl_client *c = &nc->c;
    struct tl_parse_limits lim = w->lim.parse;
    struct lookahead la = {.next = 0};
    size_t off = 0;
    int64_t clock_us = 0; /* one clock read serves as a request's end and the next one's start */
    while (off < len && !c->close_after_reply && !c->closing) {
        struct tl_args args;
        size_t consumed = 0;
        char err[256];
        look_ahead(&la, c, buf, len, off);
        lim.unauthenticated = !c->authenticated;
        int rc = tl_parse_request(buf + off, len - off, &lim, &args, &consumed, err, sizeof(err));
        if (rc == TL_PARSE_NEED_MORE) {
            nc->need_bytes = consumed;
            break;
        }
        if (rc == TL_PARSE_ERROR) {
            atomic_fetch_add(&tl_srv->protocol_errors, 1);
            char line[TL_ERRORSTAT_CODE_BYTES]; /* the reply's first bytes hold its code */
            size_t n = strnlen(err, sizeof line - 1);
            line[0] = '-';
            memcpy(line + 1, err, n);
            tl_errorstat_count(line, n + 1);
            tl_log(TL_LOG_VERBOSE, "Protocol error (%s) from client id=%llu addr=%s", err,
                   (unsigned long long)c->id, c->addr);
            if (!c->reply_off) /* CLIENT REPLY OFF: not even this, as Redis */
                tl_reply_error(c, err);
            c->close_after_reply = true;
            break;
        }
        off += consumed;
        nc->need_bytes = 0;
        if (args.argc > 0)
            tl_dispatch(c, &args, &clock_us);
        tl_args_free(&args);
        long long limit = w->lim.output_limit;
        if (limit > 0 && pending_output(nc) > (unsigned long long)limit) {
            atomic_fetch_add(&tl_srv->output_limit_disconnections, 1);
            tl_log(TL_LOG_WARNING,
                   "Client id=%llu addr=%s closed for overcoming of output buffer limits "
                   "(%zu bytes pending, client-output-buffer-limit %lld).",
                   (unsigned long long)c->id, c->addr, pending_output(nc), limit);
            close_client(w, nc);
            break;
        }
    }
    return off;
}

/* Bytes received for a client. */
static void on_data(struct tl_worker *w, struct net_client *nc, const char *data, size_t n)
{
    struct tl_client *c = &nc->c;
    nc->last_io_ms = w->now_ms;
    w->stat_in += n;
    if (nc->closed || c->close_after_reply || w->stopping)
        return; /* input after QUIT, an error or a kill is dropped */

    if (c->query.len == 0) {
        /* Nothing buffered: parse straight from the receive buffer, keep only the rest. */
        size_t used = run_requests(w, nc, data, n);
        if (used < n && !nc->closed && !c->close_after_reply &&
            tl_buf_append(&c->query, data + used, n - used) != 0) {
            log_client_error(w, nc, "out of memory buffering its request");
            close_client(w, nc);
            return;
        }
    } else {
        if (tl_buf_append(&c->query, data, n) != 0) {
            log_client_error(w, nc, "out of memory buffering its request");
            close_client(w, nc);
            return;
        }
        /* The parser said how many bytes the request needs: wait for them (a large bulk
         * arrives in many pieces and would otherwise be re-parsed for each). */
        if (c->query.len >= nc->need_bytes) {
            size_t used = run_requests(w, nc, c->query.data, c->query.len);
            tl_buf_consume(&c->query, used);
        }
    }
    if (nc->closed)
        return;
    if (c->close_after_reply)
        c->query.len = 0;
    if (c->query.len == 0 && c->query.cap > TL_NET_KEEP_BUF_BYTES)
        tl_buf_free(&c->query);
    if (c->query.len > (unsigned long long)w->lim.query_limit) {
        tl_log(TL_LOG_WARNING,
               "Closing client id=%llu addr=%s that reached max query buffer length "
               "(%zu bytes, client-query-buffer-limit %lld)",
               (unsigned long long)c->id, c->addr, c->query.len, w->lim.query_limit);
        close_client(w, nc);
        return;
    }
    if (c->closing) { /* a reply could not be buffered (resp.c) */
        log_client_error(w, nc, "out of memory buffering its replies");
        close_client(w, nc);
        return;
    }
    client_flush(w, nc);
}

static void on_recv(struct tl_worker *w, struct net_client *nc, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        nc->recv_armed = false;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        char *buf = w->bufs + (size_t)bid * TL_NET_RECV_BUF_BYTES;
        if (cqe->res > 0)
            on_data(w, nc, buf, (size_t)cqe->res);
        io_uring_buf_ring_add(w->br, buf, TL_NET_RECV_BUF_BYTES, (unsigned short)bid,
                              io_uring_buf_ring_mask(TL_NET_RECV_BUF_COUNT), w->recycled++);
    }
    if (nc->closed) {
        maybe_free(w, nc);
        return;
    }
    if (cqe->res == 0) {
        /* The peer closed its side: send what is pending, then close. */
        nc->c.close_after_reply = true;
        client_flush(w, nc);
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS) {
        char why[128];
        snprintf(why, sizeof(why), "receive failed: %s", strerror(-cqe->res));
        log_client_error(w, nc, why);
        close_client(w, nc);
    } else if (!more && !nc->recv_armed) {
        /* The kernel ended the multishot (the buffer ring ran dry, or it chose to): again. */
        arm_recv(w, nc);
    }
    maybe_free(w, nc);
}

static void on_send(struct tl_worker *w, struct net_client *nc, struct io_uring_cqe *cqe)
{
    nc->send_inflight = false;
    if (cqe->res < 0) {
        if (!nc->closed) {
            char why[128];
            snprintf(why, sizeof(why), "send failed: %s", strerror(-cqe->res));
            log_client_error(w, nc, why);
            close_client(w, nc);
        }
        maybe_free(w, nc);
        return;
    }
    w->stat_out += (uint64_t)cqe->res;
    nc->sent += (size_t)cqe->res;
    nc->last_io_ms = w->now_ms;
    if (nc->closed) {
        maybe_free(w, nc);
        return;
    }
    if (nc->sent < nc->sending.len) {
        start_send(w, nc); /* partial: the socket buffer filled up */
        return;
    }
    nc->sending.len = 0;
    nc->sent = 0;
    if (nc->sending.cap > TL_NET_KEEP_BUF_BYTES)
        tl_buf_free(&nc->sending);
    if (nc->c.out.len == 0 && nc->c.out.cap > TL_NET_KEEP_BUF_BYTES)
        tl_buf_free(&nc->c.out);
    client_flush(w, nc);
    maybe_free(w, nc);
}

/* Clients marked by tl_client_kill: close after their pending replies. */
static void handle_kills(struct tl_worker *w)
{
    if (!atomic_exchange(&w->kill_pending, false))
        return;
    struct net_client *next;
    for (struct net_client *nc = w->clients; nc; nc = next) {
        next = nc->next;
        if (nc->closed || !atomic_load(&nc->kill_requested) || nc->kill_deadline_ms)
            continue;
        nc->c.close_after_reply = true;
        nc->kill_deadline_ms = w->now_ms + TL_NET_KILL_GRACE_MS;
        client_flush(w, nc);
        maybe_free(w, nc);
    }
}

/* A client parked for long: either the WAL is slow (the wait below returns once the record
 * is there; under fsync always it may sync in this thread, once per TL_NET_PARK_CHECK_MS), or
 * it has stopped after an I/O error and the writes will never be acknowledged: close. */
static void check_stuck(struct tl_worker *w, struct net_client *nc)
{
    enum tl_wait what = net.s->cfg.fsync == TL_FSYNC_ALWAYS ? TL_WAIT_DURABLE : TL_WAIT_WRITTEN;
    int rc = tl_db_wait(net.s->db, nc->c.wait_seq, what);
    if (rc < 0) {
        tl_log(TL_LOG_WARNING,
               "Client id=%llu addr=%s: its writes cannot be made durable (%s); "
               "closing it",
               (unsigned long long)nc->c.id, nc->c.addr, tl_last_error());
        close_client(w, nc);
        return;
    }
    nc->parked_ms = w->now_ms; /* arrived: flush_parked sends at the end of the turn */
}

/* Every TL_NET_IDLE_SCAN_MS: idle clients (timeout setting), killed clients past their grace. */
static void scan_clients(struct tl_worker *w)
{
    if (w->now_ms - w->last_idle_scan_ms < TL_NET_IDLE_SCAN_MS)
        return;
    w->last_idle_scan_ms = w->now_ms;
    int64_t idle_ms = (int64_t)w->lim.timeout_s * 1000;
    struct net_client *next;
    for (struct net_client *nc = w->clients; nc; nc = next) {
        next = nc->next;
        if (nc->closed)
            continue;
        if (nc->kill_deadline_ms && w->now_ms >= nc->kill_deadline_ms) {
            close_client(w, nc);
        } else if (nc->parked && w->now_ms - nc->parked_ms > TL_NET_PARK_CHECK_MS) {
            check_stuck(w, nc);
        } else if (idle_ms > 0 && !nc->parked && !nc->send_inflight &&
                   w->now_ms - nc->last_io_ms > idle_ms) {
            log_client_error(w, nc, "closing idle client (timeout)");
            close_client(w, nc);
        }
        maybe_free(w, nc);
    }
}

/* ---- the worker loop ------------------------------------------------------------------------ */

static void read_limits(struct tl_worker *w)
{
    struct tl_server *s = net.s;
    pthread_mutex_lock(&s->cfg_lock);
    w->lim.parse.max_bulk_len = s->cfg.proto_max_bulk_len;
    w->lim.parse.max_multibulk_len = s->cfg.max_multibulk_len;
    w->lim.parse.inline_max_size = s->cfg.inline_max_size;
    w->lim.parse.unauthenticated = false;
    w->lim.query_limit = s->cfg.client_query_buffer_limit;
    w->lim.output_limit = s->cfg.client_output_buffer_limit;
    w->lim.maxclients = s->cfg.maxclients;
    w->lim.timeout_s = s->cfg.timeout_s;
    w->lim.protected_mode = s->cfg.protected_mode;
    w->lim.has_password = s->cfg.requirepass[0] != '\0';
    pthread_mutex_unlock(&s->cfg_lock);
}

static void on_worker_cqe(struct tl_worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (ud == UD_IGNORE)
        return;
    if (ud == UD_EVENTFD) {
        atomic_store(&w->wake_pending, false);
        if (!w->exiting)
            arm_eventfd(w);
        return;
    }
    if (ud == UD_TICK) {
        if (!w->exiting)
            arm_tick(w);
        if (w->accept_retry && !w->stopping) {
            w->accept_retry = false;
            for (int i = 0; i < w->n_listen; i++) {
                if (!w->accept_armed[i])
                    arm_accept(w, i);
            }
        }
        scan_clients(w);
        return;
    }
    int i = (int)(ud - UD_ACCEPT);
    if (i < 0 || i >= w->n_listen)
        return;
    if (cqe->res >= 0) {
        if (w->stopping)
            close(cqe->res);
        else
            on_accept(w, cqe->res);
    }
    if (!more) {
        w->accept_armed[i] = false;
        if (w->stopping)
            return;
        if (cqe->res < 0 && cqe->res != -ECANCELED) {
            /* Out of file descriptors, most likely: retry at the next tick, not in a loop. */
            tl_log(TL_LOG_WARNING, "Accepting a client failed: %s", strerror(-cqe->res));
            w->accept_retry = true;
        } else {
            arm_accept(w, i);
        }
    }
}

static void on_cqe(struct tl_worker *w, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        w->inflight--;
    if (cqe->user_data < TL_NET_UD_CLIENT_MIN) {
        on_worker_cqe(w, cqe);
        return;
    }
    struct net_client *nc = (struct net_client *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_MASK);
    if ((cqe->user_data & OP_MASK) == OP_RECV)
        on_recv(w, nc, cqe);
    else
        on_send(w, nc, cqe);
}

/* Handles the completions that are ready; returns how many. */
static unsigned reap(struct tl_worker *w)
{
    struct io_uring_cqe *cqes[TL_NET_CQE_BATCH];
    unsigned total = 0;
    for (int b = 0; b < TL_NET_CQE_BATCHES_MAX; b++) {
        unsigned n = io_uring_peek_batch_cqe(&w->ring, cqes, TL_NET_CQE_BATCH);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n; i++)
            on_cqe(w, cqes[i]);
        io_uring_cq_advance(&w->ring, n);
        if (w->recycled) {
            io_uring_buf_ring_advance(w->br, w->recycled);
            w->recycled = 0;
        }
        total += n;
    }
    return total;
}

static void flush_stats(struct tl_worker *w)
{
    if (w->stat_in) {
        atomic_fetch_add_explicit(&tl_srv->net_input_bytes, w->stat_in, memory_order_relaxed);
        w->stat_in = 0;
    }
    if (w->stat_out) {
        atomic_fetch_add_explicit(&tl_srv->net_output_bytes, w->stat_out, memory_order_relaxed);
        w->stat_out = 0;
    }
}

/* Shutdown, first step: stop accepting, let every client receive what it is owed. */
static void begin_stop(struct tl_worker *w)
{
    w->stopping = true;
    w->stop_deadline_ms = w->now_ms + TL_NET_STOP_GRACE_MS;
    for (int i = 0; i < w->n_listen; i++) {
        if (w->accept_armed[i])
            cancel_op(w, UD_ACCEPT + (uint64_t)i);
    }
    struct net_client *next;
    for (struct net_client *nc = w->clients; nc; nc = next) {
        next = nc->next;
        nc->c.close_after_reply = true;
        client_flush(w, nc);
        maybe_free(w, nc);
    }
}

/* Shutdown, last step: cancel everything still in flight and wait (boundedly) for the
 * completions, so no buffer is freed while the kernel may still write to it. */
static void drain(struct tl_worker *w)
{
    w->exiting = true;
    struct net_client *next;
    for (struct net_client *nc = w->clients; nc; nc = next) {
        next = nc->next;
        close_client(w, nc);
        maybe_free(w, nc);
    }
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    int64_t deadline = tl_now_ms() + TL_NET_DRAIN_MS;
    while (w->inflight > 0 && tl_now_ms() < deadline) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = TL_NET_TICK_MS * 1000000LL};
        io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        w->now_ms = tl_now_ms();
        reap(w);
    }
    if (w->inflight > 0)
        tl_log(TL_LOG_WARNING, "Worker %d: %u operations still in flight at exit", w->index,
               w->inflight);
    /* Whatever did not complete is torn down with the ring; free the clients regardless. */
    while (w->clients) {
        struct net_client *nc = w->clients;
        nc->recv_armed = nc->send_inflight = false;
        maybe_free(w, nc);
    }
}

static void worker_loop(struct tl_worker *w)
{
    for (int i = 0; i < w->n_listen; i++)
        arm_accept(w, i);
    arm_eventfd(w);
    arm_tick(w);
    w->now_ms = tl_now_ms();
    w->last_idle_scan_ms = w->now_ms;
    for (;;) {
        read_limits(w);
        write_parked(w);
        flush_parked(w);
        flush_stats(w);
        if (w->stopping && (!w->clients || w->now_ms >= w->stop_deadline_ms))
            break;
        int rc = io_uring_submit_and_wait(&w->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            tl_log(TL_LOG_WARNING, "Worker %d: io_uring_submit_and_wait: %s", w->index,
                   strerror(-rc));
        w->now_ms = tl_now_ms();
        reap(w);
        handle_kills(w);
        if (!w->stopping && atomic_load(&w->stop))
            begin_stop(w);
    }
    drain(w);
}

/* ---- worker set-up -------------------------------------------------------------------------- */

static int setup_ring(struct tl_worker *w)
{
    /* The preferred flags first; older kernels reject the newer ones with EINVAL. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = TL_NET_CQ_ENTRIES;
        rc = io_uring_queue_init_params(TL_NET_SQ_ENTRIES, &w->ring, &p);
        if (rc == 0) {
            if (i > 0 && w->index == 0)
                tl_log(TL_LOG_NOTICE, "io_uring: this kernel lacks SINGLE_ISSUER or "
                                      "DEFER_TASKRUN; running without them");
            break;
        }
        if (rc != -EINVAL)
            break;
    }
    if (rc < 0) {
        tl_log(TL_LOG_WARNING, "Worker %d: cannot set up io_uring: %s", w->index, strerror(-rc));
        return rc;
    }
    w->ring_ready = true;

    /* The provided-buffer ring, registered by hand (liburing 2.3 has no
     * io_uring_setup_buf_ring): page-aligned memory for the ring entries. */
    w->br_bytes = TL_NET_RECV_BUF_COUNT * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, w->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    w->br = mem;
    w->bufs = malloc((size_t)TL_NET_RECV_BUF_COUNT * TL_NET_RECV_BUF_BYTES);
    if (!w->bufs)
        return -ENOMEM;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)w->br;
    reg.ring_entries = TL_NET_RECV_BUF_COUNT;
    reg.bgid = TL_NET_BUF_GROUP;
    rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (rc < 0) {
        tl_log(TL_LOG_WARNING,
               "Worker %d: cannot register a provided-buffer ring (%s): tallyd needs Linux "
               "6.0 or newer (multishot receive into a buffer ring)",
               w->index, strerror(-rc));
        return rc;
    }
    io_uring_buf_ring_init(w->br);
    int mask = io_uring_buf_ring_mask(TL_NET_RECV_BUF_COUNT);
    for (int i = 0; i < TL_NET_RECV_BUF_COUNT; i++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * TL_NET_RECV_BUF_BYTES,
                              TL_NET_RECV_BUF_BYTES, (unsigned short)i, mask, i);
    io_uring_buf_ring_advance(w->br, TL_NET_RECV_BUF_COUNT);
    return 0;
}

static void *worker_main(void *arg)
{
    struct tl_worker *w = arg;
    /* The ring is created here: with SINGLE_ISSUER only its creator may submit. */
    int rc = setup_ring(w);
    pthread_mutex_lock(&net.start_lock);
    w->start_rc = rc;
    net.started++;
    pthread_cond_broadcast(&net.start_cond);
    pthread_mutex_unlock(&net.start_lock);
    if (rc == 0)
        worker_loop(w);
    flush_stats(w);
    /* The ring goes with the thread that created it; the buffers it used are freed later. */
    if (w->ring_ready) {
        io_uring_queue_exit(&w->ring);
        w->ring_ready = false;
    }
    return NULL;
}

static void worker_free(struct tl_worker *w)
{
    if (w->ring_ready) {
        io_uring_queue_exit(&w->ring);
        w->ring_ready = false;
    }
    for (int i = 0; i < w->n_listen; i++)
        close(w->listen_fds[i]);
    if (w->efd >= 0)
        close(w->efd);
    if (w->br)
        munmap(w->br, w->br_bytes);
    free(w->bufs);
    free(w);
}

/* ---- listening sockets ---------------------------------------------------------------------- */

struct bind_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char text[128];
};

/* Splits the bind setting into addresses ("*" is every IPv4 address, "::" every IPv6 one; a
 * leading "-" as in redis.conf is accepted and ignored). */
static int resolve_bind(const char *bind, int port, struct bind_addr *out, int max)
{
    char copy[sizeof(((struct tl_config *)0)->bind)];
    snprintf(copy, sizeof(copy), "%s", bind);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (tok[0] == '-')
            tok++;
        if (strcmp(tok, "*") == 0)
            tok = "0.0.0.0";
        else if (strcmp(tok, "::*") == 0)
            tok = "::";
        if (n == max) {
            tl_log(TL_LOG_WARNING, "bind: more than %d addresses", max);
            return -1;
        }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        char portstr[16];
        snprintf(portstr, sizeof(portstr), "%d", port);
        int rc = getaddrinfo(tok, portstr, &hints, &res);
        if (rc != 0 || !res) {
            tl_log(TL_LOG_WARNING, "bind: cannot resolve '%s': %s", tok, gai_strerror(rc));
            return -1;
        }
        memcpy(&out[n].sa, res->ai_addr, res->ai_addrlen);
        out[n].len = res->ai_addrlen;
        snprintf(out[n].text, sizeof(out[n].text), "%s", tok);
        freeaddrinfo(res);
        n++;
    }
    if (n == 0) {
        tl_log(TL_LOG_WARNING, "bind: no address given");
        return -1;
    }
    return n;
}

static void set_port(struct bind_addr *a, int port)
{
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
}

/* A socket bound to a, listening when listen_too; SO_REUSEPORT when reuseport. */
static int open_socket(const struct bind_addr *a, bool reuseport, bool listen_too)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0)
        goto fail;
    if (listen_too && listen(fd, TL_NET_LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    return -err;
}

/* Binds every worker's listening sockets. First each address is bound once without
 * SO_REUSEPORT: that fails if anything (another tallyd with SO_REUSEPORT included) holds the
 * port, so two servers never silently share one; with port 0 it picks the port. */
static int open_listeners(struct tl_server *s)
{
    struct bind_addr addrs[TL_NET_MAX_BIND];
    int n = resolve_bind(s->cfg.bind, s->cfg.port, addrs, TL_NET_MAX_BIND);
    if (n < 0)
        return -1;
    int port = s->cfg.port;
    for (int i = 0; i < n; i++) {
        set_port(&addrs[i], port);
        int fd = open_socket(&addrs[i], false, false);
        if (fd < 0) {
            tl_log(TL_LOG_WARNING, "Could not create server TCP listening socket %s:%d: %s",
                   addrs[i].text, port, strerror(-fd));
            return -1;
        }
        if (port == 0) {
            struct sockaddr_storage sa;
            socklen_t len = sizeof(sa);
            getsockname(fd, (struct sockaddr *)&sa, &len);
            port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                 : ((struct sockaddr_in6 *)&sa)->sin6_port);
            set_port(&addrs[i], port);
        }
        close(fd);
    }
    s->cfg.port = port;
    for (int wi = 0; wi < s->n_workers; wi++) {
        struct tl_worker *w = s->workers[wi];
        for (int i = 0; i < n; i++) {
            int fd = open_socket(&addrs[i], true, true);
            if (fd < 0) {
                tl_log(TL_LOG_WARNING, "Could not create server TCP listening socket %s:%d: %s",
                       addrs[i].text, port, strerror(-fd));
                return -1;
            }
            w->listen_fds[w->n_listen++] = fd;
        }
    }
    return 0;
}

/* ---- start and stop ------------------------------------------------------------------------- */

static void free_workers(struct tl_server *s)
{
    for (int i = 0; i < s->n_workers; i++) {
        if (s->workers[i])
            worker_free(s->workers[i]);
    }
    free(s->workers);
    s->workers = NULL;
    s->n_workers = 0;
}

/* Stops and joins the workers that run, then frees them all. */
static void stop_workers(struct tl_server *s)
{
    for (int i = 0; i < s->n_workers; i++) {
        struct tl_worker *w = s->workers[i];
        if (w && w->thread_started) {
            atomic_store(&w->stop, true);
            wake_worker(w);
        }
    }
    for (int i = 0; i < s->n_workers; i++) {
        struct tl_worker *w = s->workers[i];
        if (w && w->thread_started) {
            pthread_join(w->thread, NULL);
            w->thread_started = false;
        }
    }
    /* No commit notification may touch a worker past this point. */
    tl_db_set_commit_notify(s->db, NULL, NULL);
    atomic_store(&net.notify_running, false);
    while (atomic_load(&net.notify_active) > 0)
        sched_yield();
    free_workers(s);
}

int tl_net_start(struct tl_server *s)
{
    net.s = s;
    int n = s->cfg.io_threads;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    if (n > TL_NET_MAX_WORKERS)
        n = TL_NET_MAX_WORKERS;

    s->workers = calloc((size_t)n, sizeof(*s->workers));
    if (!s->workers)
        return -ENOMEM;
    s->n_workers = n;
    for (int i = 0; i < n; i++) {
        struct tl_worker *w = calloc(1, sizeof(*w));
        if (!w)
            goto fail;
        s->workers[i] = w;
        w->index = i;
        w->efd = -1;
        w->tick_ts.tv_nsec = TL_NET_TICK_MS * 1000000LL;
        w->efd = eventfd(0, EFD_CLOEXEC);
        if (w->efd < 0) {
            tl_log(TL_LOG_WARNING, "eventfd: %s", strerror(errno));
            goto fail;
        }
    }
    if (open_listeners(s) != 0)
        goto fail;

    atomic_store(&net.notify_running, true);
    tl_db_set_commit_notify(s->db, net_commit_notify, NULL);

    net.started = 0;
    int launched = 0;
    for (int i = 0; i < n; i++) {
        struct tl_worker *w = s->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            tl_log(TL_LOG_WARNING, "Cannot start a network thread: %s", strerror(rc));
            break;
        }
        w->thread_started = true;
        launched++;
        char name[16];
        snprintf(name, sizeof(name), "tally-net-%d", i % TL_NET_MAX_WORKERS);
        pthread_setname_np(w->thread, name);
    }
    bool ok = launched == n;
    pthread_mutex_lock(&net.start_lock);
    while (net.started < launched)
        pthread_cond_wait(&net.start_cond, &net.start_lock);
    pthread_mutex_unlock(&net.start_lock);
    for (int i = 0; i < launched; i++) {
        if (s->workers[i]->start_rc != 0)
            ok = false;
    }
    if (!ok) {
        stop_workers(s);
        return -1;
    }
    tl_log(TL_LOG_NOTICE, "%d network threads on io_uring, listening on %s port %d", n, s->cfg.bind,
           s->cfg.port);
    return 0;
fail:
    free_workers(s);
    return -1;
}

void tl_net_stop(struct tl_server *s)
{
    if (!s->workers)
        return;
    stop_workers(s);
}
