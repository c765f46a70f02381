/*
 * afxdp_fwd: the C side of wirespeed's AF_XDP forwarding comparison (tools/afxdp-bench.sh).
 *
 * A forwarder written on libxdp's xsk API, doing what the wirespeed forwarder in
 * backends/afxdp/examples/afxdp_bench.rs does per packet: receive a burst of up to 32 frames
 * on queue 0 of IN, copy each into a frame of OUT's UMEM (two sockets, two UMEMs), swap its
 * MAC addresses, and send the burst on queue 0 of OUT. Copy-mode sockets with need_wakeup;
 * the XDP program is libxdp's default one, attached in driver or generic (SKB) mode.
 *
 * Backpressure: when OUT's Tx ring has no room, it kicks the kernel and reclaims completions
 * until it has (it never drops); Rx stops meanwhile, so any loss is the kernel's on IN.
 * It polls without ever blocking (busy, one core).
 *
 * Written for this project. Build: gcc -O2 afxdp_fwd.c $(pkg-config --cflags --libs libxdp libbpf)
 * Run: afxdp_fwd IN OUT drv|skb   (prints "afxdp_fwd rx N tx N" every second; stops on SIGINT/SIGTERM)
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/if_link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <xdp/xsk.h>

#define FRAMES 4096
#define FRAME 2048
#define RING 2048
#define BATCH 32

struct port {
    void *area;
    struct xsk_umem *umem;
    struct xsk_ring_prod fq;
    struct xsk_ring_cons cq;
    struct xsk_socket *xsk;
    struct xsk_ring_cons rx;
    struct xsk_ring_prod tx;
    uint64_t free[FRAMES];
    uint32_t nfree;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void die(const char *what, int err) {
    fprintf(stderr, "afxdp_fwd: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static void open_port(struct port *p, const char *ifname, uint32_t xdp_flags) {
    p->area = mmap(NULL, (size_t)FRAMES * FRAME, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p->area == MAP_FAILED)
        die("mmap", errno);
    struct xsk_umem_config ucfg = {
        .fill_size = RING, .comp_size = RING, .frame_size = FRAME, .frame_headroom = 0, .flags = 0};
    int err = xsk_umem__create(&p->umem, p->area, (uint64_t)FRAMES * FRAME, &p->fq, &p->cq, &ucfg);
    if (err)
        die("xsk_umem__create", err);
    struct xsk_socket_config scfg = {.rx_size = RING,
                                     .tx_size = RING,
                                     .libxdp_flags = 0,
                                     .xdp_flags = xdp_flags,
                                     .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP};
    err = xsk_socket__create(&p->xsk, ifname, 0, p->umem, &p->rx, &p->tx, &scfg);
    if (err)
        die(ifname, err);
    p->nfree = 0;
    for (uint32_t i = 0; i < FRAMES; i++)
        p->free[p->nfree++] = (uint64_t)i * FRAME;
}

/* Gives the kernel `n` free frames to receive into (the input port: half the UMEM). */
static void fill(struct port *p, uint32_t n) {
    uint32_t idx;
    if (xsk_ring_prod__reserve(&p->fq, n, &idx) != n)
        die("fill ring reserve", ENOSPC);
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&p->fq, idx + i) = p->free[--p->nfree];
    xsk_ring_prod__submit(&p->fq, n);
}

static void kick_tx(struct port *p) {
    sendto(xsk_socket__fd(p->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0);
}

/* Returns completed Tx frames to the free list. */
static void complete(struct port *p) {
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&p->cq, RING, &idx);
    for (uint32_t i = 0; i < n; i++)
        p->free[p->nfree++] = *xsk_ring_cons__comp_addr(&p->cq, idx + i);
    if (n)
        xsk_ring_cons__release(&p->cq, n);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "drv") && strcmp(argv[3], "skb"))) {
        fprintf(stderr, "usage: afxdp_fwd IN OUT drv|skb\n");
        return 2;
    }
    uint32_t xdp_flags = strcmp(argv[3], "drv") == 0 ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    static struct port in, out;
    open_port(&in, argv[1], xdp_flags);
    open_port(&out, argv[2], xdp_flags);
    fill(&in, RING);
    printf("afxdp_fwd: %s -> %s, %s mode, copy, need_wakeup, batch %d\n", argv[1], argv[2], argv[3], BATCH);
    fflush(stdout);

    uint64_t rx = 0, tx = 0;
    uint32_t loops = 0;
    double next = now() + 1.0;
    while (!stop) {
        if ((++loops & 1023) == 0 && now() >= next) {
            printf("afxdp_fwd rx %" PRIu64 " tx %" PRIu64 "\n", rx, tx);
            fflush(stdout);
            next += 1.0;
        }
        uint32_t idx_rx;
        uint32_t n = xsk_ring_cons__peek(&in.rx, BATCH, &idx_rx);
        if (n == 0) {
            if (xsk_ring_prod__needs_wakeup(&in.fq))
                recvfrom(xsk_socket__fd(in.xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
            complete(&out);
            continue;
        }
        /* Room on OUT's Tx ring and free frames for the whole burst, waiting as long as it takes. */
        uint32_t idx_tx;
        uint64_t back[BATCH];
        complete(&out);
        while (out.nfree < n || xsk_ring_prod__reserve(&out.tx, n, &idx_tx) != n) {
            kick_tx(&out);
            complete(&out);
            if (stop)
                goto done;
        }
        for (uint32_t i = 0; i < n; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&in.rx, idx_rx + i);
            uint8_t *src = xsk_umem__get_data(in.area, d->addr);
            uint64_t frame = out.free[--out.nfree];
            uint8_t *dst = xsk_umem__get_data(out.area, frame);
            memcpy(dst, src, d->len);
            uint8_t mac[6];
            memcpy(mac, dst, 6);
            memcpy(dst, dst + 6, 6);
            memcpy(dst + 6, mac, 6);
            struct xdp_desc *t = xsk_ring_prod__tx_desc(&out.tx, idx_tx + i);
            t->addr = frame;
            t->len = d->len;
            back[i] = xsk_umem__extract_addr(d->addr);
        }
        xsk_ring_prod__submit(&out.tx, n);
        xsk_ring_cons__release(&in.rx, n);
        rx += n;
        tx += n;
        /* The input frames go back to IN's fill ring (the kernel took n entries from it). */
        uint32_t idx_fq;
        if (xsk_ring_prod__reserve(&in.fq, n, &idx_fq) == n) {
            for (uint32_t i = 0; i < n; i++)
                *xsk_ring_prod__fill_addr(&in.fq, idx_fq + i) = back[i];
            xsk_ring_prod__submit(&in.fq, n);
        } else {
            for (uint32_t i = 0; i < n; i++)
                in.free[in.nfree++] = back[i];
        }
        if (xsk_ring_prod__needs_wakeup(&out.tx))
            kick_tx(&out);
    }
done:
    printf("afxdp_fwd rx %" PRIu64 " tx %" PRIu64 "\n", rx, tx);
    xsk_socket__delete(in.xsk);
    xsk_socket__delete(out.xsk);
    xsk_umem__delete(in.umem);
    xsk_umem__delete(out.umem);
    return 0;
}
