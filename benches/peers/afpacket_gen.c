/*
 * afpacket_gen: the traffic generator of tools/afxdp-bench.sh. Sends one IPv4/UDP frame
 * (10.1.0.2 -> 10.2.0.9, UDP 12345 -> 5001, payload 0x5a) over and over on IFNAME through an
 * AF_PACKET socket that bypasses the qdisc, in sendmmsg() batches of 64, at PPS packets per
 * second (0: as fast as it can). Prints "afpacket_gen sent N" every second; stops on
 * SIGINT/SIGTERM. SRC_IP and DST_IP, when given, replace the two addresses (the ESP runs send
 * from the gateway fixture's LAN host to its remote network).
 *
 * Written for this project. Build: gcc -O2 afpacket_gen.c
 * Run: afpacket_gen IFNAME DST_MAC SRC_MAC FRAME_BYTES PPS [SRC_IP DST_IP]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static int parse_mac(const char *s, uint8_t *m) {
    return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6 ? 0 : -1;
}

static uint16_t csum(const uint8_t *p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 8) {
        fprintf(stderr, "usage: afpacket_gen IFNAME DST_MAC SRC_MAC FRAME_BYTES PPS [SRC_IP DST_IP]\n");
        return 2;
    }
    uint8_t frame[9216];
    size_t len = (size_t)atoi(argv[4]);
    double pps = atof(argv[5]);
    if (len < 60 || len > sizeof(frame) || parse_mac(argv[2], frame) || parse_mac(argv[3], frame + 6)) {
        fprintf(stderr, "afpacket_gen: bad MAC or frame size (60..9216)\n");
        return 2;
    }
    frame[12] = 0x08;
    frame[13] = 0x00;
    uint8_t *ip = frame + 14;
    uint16_t ip_len = (uint16_t)(len - 14), udp_len = (uint16_t)(len - 34);
    memset(ip, 0, len - 14);
    memset(ip + 28, 0x5a, len - 42);
    ip[0] = 0x45;
    ip[2] = ip_len >> 8;
    ip[3] = ip_len & 0xff;
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, (uint8_t[]){10, 1, 0, 2, 10, 2, 0, 9}, 8);
    if (argc == 8 && (inet_pton(AF_INET, argv[6], ip + 12) != 1 || inet_pton(AF_INET, argv[7], ip + 16) != 1)) {
        fprintf(stderr, "afpacket_gen: bad IPv4 address\n");
        return 2;
    }
    uint16_t c = csum(ip, 20);
    ip[10] = c >> 8;
    ip[11] = c & 0xff;
    uint8_t *udp = ip + 20;
    udp[0] = 12345 >> 8;
    udp[1] = 12345 & 0xff;
    udp[2] = 5001 >> 8;
    udp[3] = 5001 & 0xff;
    udp[4] = udp_len >> 8;
    udp[5] = udp_len & 0xff;

    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) {
        perror("socket(AF_PACKET)");
        return 1;
    }
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
    sll.sll_ifindex = (int)if_nametoindex(argv[1]);
    if (sll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        perror(argv[1]);
        return 1;
    }
    int one = 1, big = 8 << 20;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct iovec iov = {.iov_base = frame, .iov_len = len};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0;
    double start = now(), next = start + 1.0;
    while (!stop) {
        double t = now();
        if (t >= next) {
            printf("afpacket_gen sent %" PRIu64 "\n", sent);
            fflush(stdout);
            next += 1.0;
        }
        unsigned int want = BATCH;
        if (pps > 0) {
            double due = (t - start) * pps - (double)sent;
            if (due < 1.0) {
                struct timespec nap = {0, 20000};
                nanosleep(&nap, NULL);
                continue;
            }
            if (due < want)
                want = (unsigned int)due;
        }
        int n = sendmmsg(fd, msgs, want, MSG_DONTWAIT);
        if (n > 0)
            sent += (uint64_t)n;
        else if (n < 0 && errno != EAGAIN && errno != ENOBUFS) {
            perror("afpacket_gen: sendmmsg"); /* the interface is gone: stop rather than spin */
            break;
        }
    }
    printf("afpacket_gen sent %" PRIu64 "\n", sent);
    return 0;
}
