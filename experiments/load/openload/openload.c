/*
 * openload: an open-loop HTTP/1.1 load generator that measures latency from
 * the moment each request was due, not from when it could be sent.
 *
 * Why. A closed-loop generator (wrk, h2load) keeps N connections busy: when
 * the server stalls, it stops sending, so the stall costs one slow request
 * per connection and the requests that would have arrived meanwhile are never
 * counted ("coordinated omission"). Here requests are due on a fixed schedule
 * (R per second, evenly spaced, or Poisson with -P) whatever the server does;
 * a due request goes out on the idle keep-alive connection that has waited
 * longest (so every connection takes its turn), waits in line if none is
 * idle, and its latency runs from its due time to the last byte of its
 * response. A server that freezes for a second shows up to a second of
 * latency on every request due during the freeze.
 *
 * One thread, epoll, one request in flight per connection (no pipelining).
 * Every connection is opened before the schedule starts (-S gives several
 * processes one common start on CLOCK_MONOTONIC, -O offsets this process's
 * schedule within it); a connection the server closes is opened again, with
 * a growing back-off while connecting fails.
 *
 * A measured request (due in the window after the warm-up) that fails (the
 * connection breaks, the response is malformed, it times out) or never gets
 * an answer before the end counts at the latency it had reached, as a lower
 * bound ("censored"), besides being counted as an error: failures never make
 * the tail look better. Output: one JSON object on stdout with exact
 * nearest-rank percentiles (every latency is kept and sorted at the end),
 * and the generator's own CPU time and dispatch lag (how late it sent a
 * request that fell due while a connection stood idle), so that a run shows
 * the generator was not the bottleneck. Requests that had to wait for a
 * connection are counted apart (queued_sends), with the longest hand-off of
 * a freed connection to the head of the line: that wait is the server's. -o FILE writes every measured
 * latency (uint32 microseconds, native byte order) so that several
 * processes can be pooled exactly.
 *
 * A network in between (-L RTT_MS). Where the kernel has no netem to delay
 * packets, the generator plays the network: a request is written half a
 * round trip after it could have left (the time it would take to reach the
 * server), a response counts as received half a round trip after its last
 * byte arrives, and the connection is free again only then. So the server
 * sees what a client RTT_MS away would make it see (each keep-alive
 * connection idle for a round trip between requests, so a given rate needs
 * more connections), and latency includes the round trip. Not modelled:
 * the handshake (connections are opened before the schedule), TCP windows
 * (the responses here are small), loss.
 *
 * Build: cc -O2 -o openload openload.c -lm (Linux 5.11 or later: epoll_pwait2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { CONNECTING, IDLE, BUSY, CLOSED };

struct conn {
    int fd;
    enum state state;
    int prev, next;        /* the idle list, oldest first (-1: none) */
    int64_t due_ns;        /* the request in flight: when it was due */
    int64_t sent_ns;       /* ... and when it was sent */
    int64_t idle_since_ns; /* when this connection last became free */
    int64_t retry_ns;      /* CLOSED: when to connect again */
    int64_t backoff_ns;
    size_t written;
    int want_out; /* EPOLLOUT watched: a request only partly written */
    char *buf;
    size_t len, cap;
};

static struct {
    int conns;
    double rate, duration, warmup, timeout, drain, offset;
    int64_t start_at, half_rtt; /* half_rtt: -L, in ns */
    int poisson;
    unsigned seed;
    const char *path, *host, *port, *source, *out;
} opt = {.conns = 10, .rate = 1000, .duration = 10, .warmup = 1, .timeout = 10, .drain = -1, .path = "/"};

static struct sockaddr_in target, source;
static char *request;
static size_t request_len;
static int epfd;
static struct conn *conns;
static int idle_first = -1, idle_last = -1, idle_count, busy;
static int64_t measure_from, schedule_end;

static uint32_t *lat_us;
static size_t lat_n, lat_cap;
static uint64_t sent, completed, answered, censored, non2xx, connect_errors, broken, timeouts, malformed,
    reconnects, lag_over_1ms, lag_n;
static int64_t lag_max_ns, catchup_max_ns;
static uint64_t catchup_n;
static double lag_sum_ns;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* -- the idle list: a doubly linked FIFO through the connections, O(1) every way -- */

static void idle_append(int i) {
    conns[i].prev = idle_last;
    conns[i].next = -1;
    if (idle_last >= 0) conns[idle_last].next = i;
    else idle_first = i;
    idle_last = i;
    idle_count++;
}

static void idle_remove(int i) {
    struct conn *c = &conns[i];
    if (c->prev >= 0) conns[c->prev].next = c->next;
    else idle_first = c->next;
    if (c->next >= 0) conns[c->next].prev = c->prev;
    else idle_last = c->prev;
    c->prev = c->next = -1;
    idle_count--;
}

/* With a round trip to play (-L), a connection is usable again a whole round trip after the response
 * arrived: half for the response to reach the client, half for the next request to reach the server. Every
 * connection waits the same, so the FIFO stays ordered by when each becomes usable. */
static void become_idle(int i, int64_t now) {
    conns[i].state = IDLE;
    conns[i].idle_since_ns = now + 2 * opt.half_rtt;
    idle_append(i);
}

static int usable_now(int64_t now) { return idle_count && conns[idle_first].idle_since_ns <= now; }

/* -- latencies -- */

static void record(int64_t latency_ns) {
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat_us = realloc(lat_us, lat_cap * sizeof *lat_us);
        if (!lat_us) die("realloc");
    }
    int64_t us = latency_ns / 1000;
    lat_us[lat_n++] = us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int measured(int64_t due) { return due >= measure_from && due < schedule_end; }
/* Responses that arrive inside the window, whenever their request was due: the server's throughput there.
 * (answered counts the requests due in the window, some answered after it, so over capacity it overstates.) */
static uint64_t done_in_window, ok_in_window;

/* -- connections -- */

static void watch(int i, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, op, conns[i].fd, &ev) < 0) die("epoll_ctl");
}

/* A connection attempt failed: try again later, waiting twice as long each time (10 ms to 1 s). */
static void connect_failed(struct conn *c, int64_t now) {
    connect_errors++;
    close(c->fd);
    c->state = CLOSED;
    c->backoff_ns = c->backoff_ns ? (c->backoff_ns < 1000000000 ? c->backoff_ns * 2 : c->backoff_ns) : 10000000;
    c->retry_ns = now + c->backoff_ns;
}

static void open_conn(int i, int64_t now) {
    struct conn *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.source && bind(c->fd, (struct sockaddr *)&source, sizeof source) < 0) die("bind");
    c->len = c->written = 0;
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        connect_failed(c, now);
        return;
    }
    c->state = CONNECTING;
    c->want_out = 1;
    watch(i, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Ends connection i; a request in flight on it is lost (counted, and kept as a lower bound). */
static void drop(int i, int64_t now, int reopen) {
    struct conn *c = &conns[i];
    if (c->state == IDLE) idle_remove(i);
    if (c->state == BUSY) {
        busy--;
        broken++;
        if (measured(c->due_ns)) {
            record(now - c->due_ns);
            censored++;
        }
    }
    if (c->state != CLOSED) close(c->fd);
    c->state = CLOSED;
    c->retry_ns = now;
    if (reopen) {
        reconnects++;
        open_conn(i, now);
    }
}

static void connected(int i, int64_t now) {
    struct conn *c = &conns[i];
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        connect_failed(c, now);
        return;
    }
    c->backoff_ns = 0;
    c->want_out = 0;
    watch(i, EPOLLIN, EPOLL_CTL_MOD);
    become_idle(i, now);
}

static void flush_request(int i, int64_t now) {
    struct conn *c = &conns[i];
    while (c->written < request_len) {
        ssize_t n = send(c->fd, request + c->written, request_len - c->written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                if (!c->want_out) watch(i, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                c->want_out = 1;
                return;
            }
            drop(i, now, 1);
            return;
        }
        c->written += (size_t)n;
    }
    if (c->want_out) watch(i, EPOLLIN, EPOLL_CTL_MOD); /* one syscall per request otherwise saved */
    c->want_out = 0;
}

/* -- responses -- */

/* The header named `name` (with its colon) on the line at `line`, or NULL. */
static const char *field(const char *line, const char *end, const char *name) {
    size_t n = strlen(name);
    if ((size_t)(end - line) < n || strncasecmp(line, name, n)) return NULL;
    line += n;
    while (line < end && (*line == ' ' || *line == '\t')) line++;
    return line;
}

/* Length of the complete final response at the start of buf: 0 if not complete yet, -1 if
 * malformed. Interim (1xx) responses before it are part of the length. */
static ssize_t response_length(const char *buf, size_t len, int eof, int *status, int *closing) {
    size_t at = 0;
    for (;;) {
        const char *start = buf + at, *end = memmem(start, len - at, "\r\n\r\n", 4);
        if (!end) return len - at > 65536 ? -1 : 0;
        size_t head = (size_t)(end - buf) + 4;
        if (end - start < 12 || memcmp(start, "HTTP/1.", 7) || start[8] != ' ') return -1;
        for (int d = 9; d < 12; d++)
            if (!isdigit((unsigned char)start[d])) return -1; /* a status is three digits */
        if (start[12] != ' ' && start[12] != '\r') return -1;
        *status = atoi(start + 9);
        if (*status >= 100 && *status < 200 && *status != 101) {
            at = head; /* an interim response: the final one follows */
            continue;
        }
        long content_length = -1;
        int chunked = 0;
        *closing = 0;
        const char *line = (const char *)memchr(start, '\n', (size_t)(end - start) + 2) + 1; /* found by end+1 */
        while (line < end) {
            const char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2), *value;
            if ((value = field(line, eol, "content-length:"))) {
                char *stop;
                content_length = strtol(value, &stop, 10);
                if (stop == value || content_length < 0) return -1;
            } else if ((value = field(line, eol, "transfer-encoding:"))) {
                chunked = memmem(value, (size_t)(eol - value), "chunked", 7) != NULL;
            } else if ((value = field(line, eol, "connection:"))) {
                *closing = memmem(value, (size_t)(eol - value), "close", 5) != NULL;
            }
            line = eol + 2;
        }
        if (*status == 204 || *status == 304) return (ssize_t)head;
        if (chunked) {
            size_t pos = head;
            for (;;) {
                const char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
                if (!eol) return 0;
                char *stop;
                long size = strtol(buf + pos, &stop, 16);
                if (stop == buf + pos || size < 0 || !isxdigit((unsigned char)buf[pos])) return -1;
                pos = (size_t)(eol - buf) + 2;
                if (size == 0) { /* trailers, then an empty line */
                    if (len - pos >= 2 && !memcmp(buf + pos, "\r\n", 2)) return (ssize_t)(pos + 2);
                    const char *last = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
                    return last ? (ssize_t)(last - buf) + 4 : 0;
                }
                if ((size_t)size > len) return 0;
                pos += (size_t)size + 2;
                if (pos > len) return 0;
            }
        }
        if (content_length >= 0) return len >= head + (size_t)content_length ? (ssize_t)(head + content_length) : 0;
        *closing = 1; /* delimited by the end of the connection */
        return eof ? (ssize_t)len : 0;
    }
}

static void on_readable(int i) {
    struct conn *c = &conns[i];
    int eof = 0;
    for (;;) {
        if (c->cap - c->len < 16384) {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) die("realloc");
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        eof = 1;
        break;
    }
    int64_t now = now_ns();
    if (c->state != BUSY) { /* an idle connection closed by the server, or bytes nobody asked for */
        if (c->len) malformed++;
        if (c->len || eof) drop(i, now, 1);
        return;
    }
    int status = 0, closing = 0;
    ssize_t size = response_length(c->buf, c->len, eof, &status, &closing);
    if (size == 0 && !eof) return;
    if (size <= 0 || (size_t)size != c->len) {
        if (size != 0) malformed++;
        drop(i, now, 1);
        return;
    }
    completed++;
    busy--;
    if (status < 200 || status > 399) non2xx++;
    if (measured(now)) {
        done_in_window++;
        if (status >= 200 && status <= 399) ok_in_window++;
    }
    if (measured(c->due_ns)) {
        record(now + opt.half_rtt - c->due_ns); /* the client has it half a round trip later */
        answered++;
    }
    c->len = 0;
    c->state = CLOSED; /* between requests: neither busy nor yet idle */
    if (closing || eof) {
        close(c->fd);
        reconnects++;
        open_conn(i, now);
        return;
    }
    become_idle(i, now);
}

static void send_due(int64_t due) {
    int i = idle_first;
    idle_remove(i);
    struct conn *c = &conns[i];
    int64_t now = now_ns();
    due += opt.half_rtt; /* from here on: when the request reaches the server, which is when it is written */
    if (due >= c->idle_since_ns) {
        /* A connection stood idle when the request fell due: any delay is the generator's own. */
        int64_t lag = now - due;
        if (lag > lag_max_ns) lag_max_ns = lag;
        if (lag > 1000000) lag_over_1ms++;
        lag_sum_ns += (double)lag;
        lag_n++;
    } else {
        /* The request waited in line for a connection (the server was behind): the line's own delay is
         * latency already; how long the generator took to hand it the freed connection is kept apart. */
        int64_t lag = now - c->idle_since_ns;
        if (lag > catchup_max_ns) catchup_max_ns = lag;
        catchup_n++;
    }
    c->state = BUSY;
    busy++;
    c->due_ns = due - opt.half_rtt;
    c->sent_ns = now;
    c->written = 0;
    sent++;
    flush_request(i, now);
}

/* -- the run -- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* A number for JSON: null when there is none. */
static const char *num(char *out, double value) {
    if (isnan(value)) return "null";
    snprintf(out, 32, "%.3f", value);
    return out;
}

static double pct(double p) {
    if (!lat_n) return NAN;
    size_t rank = (size_t)ceil(p / 100.0 * (double)lat_n);
    return lat_us[rank ? rank - 1 : 0] / 1000.0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: openload [-c CONNS] [-R RATE] [-d SECONDS] [-w WARMUP] [-T TIMEOUT] [-D DRAIN] [-P SEED]\n"
            "                [-S START_NS] [-O OFFSET_S] [-L RTT_MS] [-p PATH] [-b SOURCE_IP] [-o LATENCY_FILE]\n"
            "                HOST:PORT\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    int ch;
    while ((ch = getopt(argc, argv, "c:R:d:w:T:D:P:S:O:L:p:b:o:")) != -1) {
        switch (ch) {
        case 'c': opt.conns = atoi(optarg); break;
        case 'R': opt.rate = atof(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'T': opt.timeout = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'P': opt.poisson = 1; opt.seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'S': opt.start_at = strtoll(optarg, NULL, 10); break;
        case 'O': opt.offset = atof(optarg); break;
        case 'L': opt.half_rtt = (int64_t)(atof(optarg) * 1e6 / 2); break;
        case 'p': opt.path = optarg; break;
        case 'b': opt.source = optarg; break;
        case 'o': opt.out = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || opt.conns < 1 || opt.rate <= 0 || opt.duration <= 0 || opt.timeout <= 0) usage();
    char *hostport = strdup(argv[optind]), *colon = strrchr(hostport, ':');
    if (!colon) usage();
    *colon = 0;
    opt.host = hostport;
    opt.port = colon + 1;
    if (opt.drain < 0) opt.drain = opt.timeout;
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(opt.port));
    if (inet_pton(AF_INET, strcmp(opt.host, "localhost") ? opt.host : "127.0.0.1", &target.sin_addr) != 1) usage();
    if (opt.source) {
        source.sin_family = AF_INET;
        if (inet_pton(AF_INET, opt.source, &source.sin_addr) != 1) usage();
    }
    size_t cap = strlen(opt.path) + strlen(opt.host) + strlen(opt.port) + 64;
    request = malloc(cap);
    request_len = (size_t)snprintf(request, cap, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", opt.path, opt.host,
                                   opt.port);
}

/* Opens every connection before the schedule starts; returns how many are up. */
static int connect_all(int64_t give_up) {
    int64_t now = now_ns();
    for (int i = 0; i < opt.conns; i++) {
        conns[i].prev = conns[i].next = -1;
        open_conn(i, now);
    }
    struct epoll_event events[1024];
    int pending = 0;
    for (int i = 0; i < opt.conns; i++) pending += conns[i].state == CONNECTING;
    while (pending > 0 && now_ns() < give_up) {
        int n = epoll_wait(epfd, events, 1024, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            if (conns[i].state != CONNECTING) continue;
            pending--;
            connected(i, 0);
        }
    }
    return idle_count;
}

static int64_t next_gap_ns(void) {
    double mean = 1e9 / opt.rate;
    if (!opt.poisson) return (int64_t)mean;
    double u = (rand_r(&opt.seed) + 1.0) / ((double)RAND_MAX + 2.0);
    return (int64_t)(-log(u) * mean);
}

/* Every CLOSED connection whose back-off has passed is opened again; requests past the timeout are lost. */
static void sweep(int64_t now) {
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->state == BUSY && now - c->sent_ns > (int64_t)(opt.timeout * 1e9)) {
            timeouts++;
            broken--; /* counted as a timeout, not as a broken connection */
            drop(i, now, 1);
        } else if (c->state == CLOSED && now >= c->retry_ns) {
            reconnects++;
            open_conn(i, now);
        }
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake on time, not 50 us late */
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    conns = calloc((size_t)opt.conns, sizeof *conns);
    int64_t t = now_ns();
    int common = opt.start_at > 0; /* a start shared with other processes */
    int up = connect_all(common && opt.start_at > t ? opt.start_at : t + (int64_t)(opt.timeout * 1e9));
    int64_t start = common ? opt.start_at : now_ns() + 1000000;
    t = now_ns();
    double late_start_ms = t > start ? (double)(t - start) / 1e6 : 0;
    while ((t = now_ns()) < start) {
        struct timespec ts = {.tv_sec = (start - t) / 1000000000, .tv_nsec = (start - t) % 1000000000};
        nanosleep(&ts, NULL);
    }
    if (late_start_ms > 0) start = now_ns(); /* connecting took longer than allowed: start late, and say so */
    start += (int64_t)(opt.offset * 1e9);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    measure_from = start + (int64_t)(opt.warmup * 1e9);
    schedule_end = measure_from + (int64_t)(opt.duration * 1e9);
    int64_t hard_end = schedule_end + (int64_t)(opt.drain * 1e9);
    int64_t next_due = start, next_sweep = start;
    struct epoll_event events[1024];

    for (;;) {
        int64_t now = now_ns();
        while (next_due < schedule_end && next_due + opt.half_rtt <= now && usable_now(now)) {
            send_due(next_due);
            next_due += next_gap_ns();
        }
        if ((next_due >= schedule_end && busy == 0) || now >= hard_end) break;
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + 50000000;
        }
        now = now_ns();
        int64_t wake = next_sweep;
        if (next_due < schedule_end && idle_count) {
            int64_t ready = next_due + opt.half_rtt; /* the request can leave, and a connection is free */
            if (conns[idle_first].idle_since_ns > ready) ready = conns[idle_first].idle_since_ns;
            if (ready < wake) wake = ready;
        }
        if (hard_end < wake) wake = hard_end;
        int64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
        int n = epoll_pwait2(epfd, events, 1024, &ts, NULL);
        if (n < 0 && errno != EINTR) die("epoll_pwait2");
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            struct conn *c = &conns[i];
            if (c->state == CONNECTING) connected(i, now_ns());
            else if (c->state == BUSY && (events[k].events & EPOLLOUT) && c->written < request_len)
                flush_request(i, now_ns());
            if ((c->state == BUSY || c->state == IDLE) && (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(i);
        }
    }
    int64_t finished = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    /* Requests due in the window that never went out, or never came back, are at least this late. */
    uint64_t unsent = 0, outstanding = 0;
    for (int64_t due = next_due; due < schedule_end; due += next_gap_ns()) {
        unsent++;
        if (measured(due)) {
            record(finished - due);
            censored++;
        }
    }
    for (int i = 0; i < opt.conns; i++) {
        if (conns[i].state != BUSY) continue;
        outstanding++;
        if (measured(conns[i].due_ns)) {
            record(finished - conns[i].due_ns);
            censored++;
        }
    }
    if (opt.out) {
        FILE *f = fopen(opt.out, "wb");
        if (!f || fwrite(lat_us, sizeof *lat_us, lat_n, f) != lat_n || fclose(f)) die(opt.out);
    }
    qsort(lat_us, lat_n, sizeof *lat_us, cmp_u32);
    double sum = 0;
    for (size_t k = 0; k < lat_n; k++) sum += lat_us[k];
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double wall = (double)(finished - start) / 1e9;
    char b[8][32];
    printf("{\"target_rate\": %.3f, \"arrivals\": \"%s\", \"rtt_ms\": %.3f, \"connections\": %d, \"connected\": %d, "
           "\"late_start_ms\": %.3f, \"warmup_s\": %.3f, \"duration_s\": %.3f, \"wall_s\": %.3f, "
           "\"sent\": %llu, \"completed\": %llu, \"measured\": %zu, \"answered\": %llu, \"measured_rps\": %.3f, "
           "\"throughput_rps\": %.3f, \"ok_rps\": %.3f, "
           "\"unsent\": %llu, \"outstanding\": %llu, \"censored\": %llu, \"non2xx\": %llu, "
           "\"connect_errors\": %llu, \"broken\": %llu, \"timeouts\": %llu, \"malformed\": %llu, "
           "\"reconnects\": %llu, "
           "\"latency_ms\": {\"mean\": %s, \"p50\": %s, \"p75\": %s, \"p90\": %s, \"p99\": %s, "
           "\"p99.9\": %s, \"p99.99\": %s, \"max\": %s}, "
           "\"generator\": {\"cpu_s\": %.3f, \"cpu_share\": %.4f, \"dispatch_lag_mean_us\": %.1f, "
           "\"dispatch_lag_max_us\": %.1f, \"dispatch_lag_over_1ms\": %llu, \"queued_sends\": %llu, "
           "\"queued_handoff_max_us\": %.1f}}\n",
           opt.rate, opt.poisson ? "poisson" : "uniform", 2 * opt.half_rtt / 1e6, opt.conns, up, late_start_ms, opt.warmup, opt.duration,
           wall, (unsigned long long)sent, (unsigned long long)completed, lat_n, (unsigned long long)answered,
           answered / opt.duration, done_in_window / opt.duration, ok_in_window / opt.duration,
           (unsigned long long)unsent, (unsigned long long)outstanding,
           (unsigned long long)censored, (unsigned long long)non2xx, (unsigned long long)connect_errors,
           (unsigned long long)broken, (unsigned long long)timeouts, (unsigned long long)malformed,
           (unsigned long long)reconnects, num(b[0], lat_n ? sum / (double)lat_n / 1000.0 : NAN),
           num(b[1], pct(50)), num(b[2], pct(75)), num(b[3], pct(90)), num(b[4], pct(99)), num(b[5], pct(99.9)),
           num(b[6], pct(99.99)), num(b[7], lat_n ? lat_us[lat_n - 1] / 1000.0 : NAN), cpu,
           wall > 0 ? cpu / wall : 0, lag_n ? lag_sum_ns / (double)lag_n / 1000.0 : 0, lag_max_ns / 1000.0,
           (unsigned long long)lag_over_1ms, (unsigned long long)catchup_n, catchup_max_ns / 1000.0);
    return 0;
}
