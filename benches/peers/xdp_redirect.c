/*
 * xdp_redirect: the XDP_REDIRECT reference of tools/afxdp-bench.sh. Attaches to IN an XDP
 * program that swaps each frame's MAC addresses (the per-packet work of the AF_XDP forwarders)
 * and redirects it to OUT with bpf_redirect(), in driver or generic (SKB) mode: forwarding
 * inside IN's NAPI, no socket, no copy to user space. The ceiling an AF_XDP forwarder on the
 * same veths can approach.
 *
 * The program is a dozen eBPF instructions written out here and loaded with libbpf's
 * bpf_prog_load(), so no clang or BPF object file is needed.
 *
 * Written for this project. Build: gcc -O2 xdp_redirect.c $(pkg-config --cflags --libs libbpf)
 * Run: xdp_redirect IN OUT drv|skb   (stays attached until SIGINT/SIGTERM)
 */
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX(sz, d, s, o) INSN(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, s, o) INSN(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define MOV_X(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_K(d, k) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, k)
#define ADD_K(d, k) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, k)
#define JGT_X(d, s, o) INSN(BPF_JMP | BPF_JGT | BPF_X, d, s, o, 0)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "drv") && strcmp(argv[3], "skb"))) {
        fprintf(stderr, "usage: xdp_redirect IN OUT drv|skb\n");
        return 2;
    }
    int in = (int)if_nametoindex(argv[1]), out = (int)if_nametoindex(argv[2]);
    if (!in || !out) {
        fprintf(stderr, "xdp_redirect: no interface %s or %s\n", argv[1], argv[2]);
        return 1;
    }
    struct bpf_insn prog[] = {
        LDX(BPF_W, 2, 1, 0),            /* r2 = data */
        LDX(BPF_W, 3, 1, 4),            /* r3 = data_end */
        MOV_X(4, 2),
        ADD_K(4, 14),
        JGT_X(4, 3, 12),                /* shorter than Ethernet: drop */
        LDX(BPF_W, 4, 2, 0),            /* swap the MAC addresses */
        LDX(BPF_H, 5, 2, 4),
        LDX(BPF_W, 0, 2, 6),
        LDX(BPF_H, 3, 2, 10),
        STX(BPF_W, 2, 0, 0),
        STX(BPF_H, 2, 3, 4),
        STX(BPF_W, 2, 4, 6),
        STX(BPF_H, 2, 5, 10),
        MOV_K(1, out),                  /* bpf_redirect(OUT, 0) */
        MOV_K(2, 0),
        CALL(BPF_FUNC_redirect),
        EXIT(),
        MOV_K(0, XDP_DROP),
        EXIT(),
    };
    char log[4096] = "";
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .log_buf = log, .log_size = sizeof(log), .log_level = 1);
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "ws_redirect", "GPL", prog, sizeof(prog) / sizeof(prog[0]), &opts);
    if (fd < 0) {
        fprintf(stderr, "xdp_redirect: load: %s\n%s\n", strerror(-fd), log);
        return 1;
    }
    __u32 flags = strcmp(argv[3], "drv") == 0 ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    int err = bpf_xdp_attach(in, fd, flags, NULL);
    if (err) {
        fprintf(stderr, "xdp_redirect: attach to %s: %s\n", argv[1], strerror(-err));
        return 1;
    }
    printf("xdp_redirect: %s -> %s, %s mode\n", argv[1], argv[2], argv[3]);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop)
        pause();
    bpf_xdp_detach(in, flags, NULL);
    return 0;
}
