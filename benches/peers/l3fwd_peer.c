/*
 * l3fwd_peer: the C/DPDK side of wirespeed's `pipeline/l3fwd` comparison.
 *
 * It does the same per-packet work as the wirespeed bench, through the same kind of loop
 * (burst of 32 in, per-packet work, burst out), on DPDK `net_null` ports:
 *   Rx burst (net_null copy=0) -> write the 64-byte IPv4/UDP template into the mbuf (the
 *   wirespeed null port copies its template into each pool buffer the same way) -> Ethernet
 *   type and IPv4 version/IHL check -> total length check -> RFC 1812 header checksum
 *   verification -> "to us?" check against the own address -> TTL check -> rte_lpm lookup
 *   (a /16 and a default route, both via one resolved gateway) -> next-hop MAC -> TTL
 *   decrement with an RFC 1624 incremental checksum update -> MAC rewrite -> Tx burst.
 * Written for this project (not taken from DPDK's l3fwd example, which Debian does not ship).
 *
 * Mode `copy` (the second argument) is the peer's I/O baseline, the counterpart of wirespeed's
 * `pipeline/null_copy_baseline`: the same Rx burst, template copy and Tx burst with no per-packet
 * stage work, so "l3fwd minus copy" is the stage work alone on both sides.
 *
 * The rate is printed twice: per wall-clock second of the measuring window, and per CPU-second
 * of this (the forwarding) thread, from CLOCK_THREAD_CPUTIME_ID around the same window, so a
 * machine shared with other jobs does not count the time the thread waited for a core.
 *
 * Build and run: tools/l3fwd-peer.sh (prints "l3fwd_peer_mpps N Mpps/core ..." and the rest).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lpm.h>
#include <rte_mbuf.h>

#define BURST 32

static const uint8_t own_mac[6] = {0x02, 0, 0, 0, 0, 1};
static const uint8_t gw_mac[6] = {0x02, 0, 0, 0, 0, 0xfe};

/* The same frame as wirespeed's `udp4_frame(64)`: 10.0.0.1:1024 -> 10.0.1.1:1024, TTL 64. */
static uint8_t template_frame[64];

static void build_template(void) {
    uint8_t *f = template_frame;
    memset(f, 0, sizeof(template_frame));
    memcpy(f, (uint8_t[]){0x02, 0, 0, 0, 0, 2}, 6);
    memcpy(f + 6, (uint8_t[]){0x02, 0, 0, 0, 0, 1}, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45; ip[1] = 0;
    uint16_t tot = 64 - 14;
    ip[2] = tot >> 8; ip[3] = tot & 0xff;
    ip[8] = 64; ip[9] = 17;
    memcpy(ip + 12, (uint8_t[]){10, 0, 0, 1}, 4);
    memcpy(ip + 16, (uint8_t[]){10, 0, 1, 1}, 4);
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (ip[i] << 8) | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    uint16_t c = ~sum;
    ip[10] = c >> 8; ip[11] = c & 0xff;
    uint8_t *udp = ip + 20;
    udp[0] = 0x04; udp[1] = 0x00; udp[2] = 0x04; udp[3] = 0x00;
    uint16_t ul = tot - 20;
    udp[4] = ul >> 8; udp[5] = ul & 0xff;
}

/* This thread's CPU time in seconds. */
static double thread_cpu_seconds(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int port_init(uint16_t port, struct rte_mempool *mp) {
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    if (rte_eth_dev_configure(port, 1, 1, &conf) < 0) return -1;
    if (rte_eth_rx_queue_setup(port, 0, 1024, rte_socket_id(), NULL, mp) < 0) return -1;
    if (rte_eth_tx_queue_setup(port, 0, 1024, rte_socket_id(), NULL) < 0) return -1;
    return rte_eth_dev_start(port);
}

int main(int argc, char **argv) {
    int used = rte_eal_init(argc, argv);
    if (used < 0) { fprintf(stderr, "EAL init failed\n"); return 1; }
    argc -= used; argv += used;
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    /* "l3fwd" (default): the per-packet work; "copy": only Rx, template copy, Tx. */
    const char *mode = argc > 2 ? argv[2] : "l3fwd";
    int copy_only = strcmp(mode, "copy") == 0;
    if (!copy_only && strcmp(mode, "l3fwd") != 0) { fprintf(stderr, "mode must be l3fwd or copy\n"); return 1; }
    if (rte_eth_dev_count_avail() < 2) { fprintf(stderr, "need two ports (two net_null vdevs)\n"); return 1; }
    build_template();

    struct rte_mempool *mp = rte_pktmbuf_pool_create("l3fwd", 8192, 256, 0,
                                                     RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    if (!mp || port_init(0, mp) < 0 || port_init(1, mp) < 0) { fprintf(stderr, "port init failed\n"); return 1; }

    struct rte_lpm_config lc = {.max_rules = 1024, .number_tbl8s = 256, .flags = 0};
    struct rte_lpm *lpm = rte_lpm_create("fib", rte_socket_id(), &lc);
    if (!lpm) { fprintf(stderr, "lpm create failed\n"); return 1; }
    /* next hop 0 = gateway 10.0.255.254, whose MAC is gw_mac */
    rte_lpm_add(lpm, RTE_IPV4(10, 0, 0, 0), 16, 0);
    rte_lpm_add(lpm, RTE_IPV4(0, 0, 0, 0), 0, 0);
    const uint32_t own_ip = RTE_IPV4(10, 0, 0, 254);

    struct rte_mbuf *pkts[BURST];
    uint64_t rx_total = 0, tx_total = 0, drops = 0, punts = 0;
    uint64_t hz = rte_get_tsc_hz();
    /* warm-up */
    uint64_t end = rte_rdtsc() + hz / 2;
    int measuring = 0;
    uint64_t start = 0;
    double cpu_start = 0.0;
    for (;;) {
        uint64_t now = rte_rdtsc();
        if (now >= end) {
            if (measuring) break;
            measuring = 1;
            rx_total = tx_total = drops = punts = 0;
            start = now;
            cpu_start = thread_cpu_seconds();
            end = now + (uint64_t)(seconds * hz);
        }
        uint16_t n = rte_eth_rx_burst(0, 0, pkts, BURST);
        rx_total += n;
        uint16_t keep = 0;
        for (uint16_t i = 0; i < n; i++) {
            struct rte_mbuf *m = pkts[i];
            uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
            memcpy(f, template_frame, 64);
            m->data_len = m->pkt_len = 64;
            if (copy_only) { pkts[keep++] = m; continue; }
            uint8_t *ip = f + 14;
            if (f[12] != 0x08 || f[13] != 0x00 || ip[0] != 0x45) { rte_pktmbuf_free(m); drops++; continue; }
            uint16_t tot = (ip[2] << 8) | ip[3];
            if (tot < 20 || tot > m->data_len - 14) { rte_pktmbuf_free(m); drops++; continue; }
            uint32_t sum = 0;
            for (int k = 0; k < 20; k += 2) sum += (ip[k] << 8) | ip[k + 1];
            while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
            if (sum != 0xffff) { rte_pktmbuf_free(m); drops++; continue; }
            uint32_t dst = ((uint32_t)ip[16] << 24) | (ip[17] << 16) | (ip[18] << 8) | ip[19];
            if (dst == own_ip) { rte_pktmbuf_free(m); punts++; continue; }
            if (ip[8] <= 1) { rte_pktmbuf_free(m); drops++; continue; }
            uint32_t nh;
            if (rte_lpm_lookup(lpm, dst, &nh) != 0) { rte_pktmbuf_free(m); drops++; continue; }
            /* RFC 1624: HC' = ~(~HC + ~m + m'), TTL is the high byte of its word. */
            uint16_t old_word = (ip[8] << 8) | ip[9];
            ip[8] -= 1;
            uint16_t new_word = (ip[8] << 8) | ip[9];
            uint32_t hc = (ip[10] << 8) | ip[11];
            uint32_t s = (uint16_t)~hc + (uint16_t)~old_word + new_word;
            while (s >> 16) s = (s & 0xffff) + (s >> 16);
            uint16_t c = ~s;
            ip[10] = c >> 8; ip[11] = c & 0xff;
            memcpy(f, gw_mac, 6);
            memcpy(f + 6, own_mac, 6);
            pkts[keep++] = m;
        }
        uint16_t sent = rte_eth_tx_burst(1, 0, pkts, keep);
        tx_total += sent;
        for (uint16_t i = sent; i < keep; i++) rte_pktmbuf_free(pkts[i]);
    }
    double secs = (double)(rte_rdtsc() - start) / hz;
    double cpu = thread_cpu_seconds() - cpu_start;
    const char *name = copy_only ? "l3fwd_peer_copy_baseline" : "l3fwd_peer";
    printf("%s_mpps %.2f Mpps/core (rx %" PRIu64 " tx %" PRIu64 " drops %" PRIu64 " punts %" PRIu64 " in %.2f s)\n",
           name, tx_total / secs / 1e6, rx_total, tx_total, drops, punts, secs);
    if (cpu > 0.0)
        printf("%s_cpu_mpps %.2f Mpps/CPU-s (%.2f s CPU time of the forwarding thread in %.2f s)\n",
               name, tx_total / cpu / 1e6, cpu, secs);
    if (drops || punts || tx_total != rx_total) { fprintf(stderr, "unexpected drops\n"); return 2; }
    rte_eal_cleanup();
    return 0;
}
