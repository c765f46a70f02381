/* The raw-AEAD peer of the esp encrypt/decrypt_batch32_aes128gcm ids: intel-ipsec-mb AES-128-GCM
 * (gcm128_enc / gcm128_dec, the functions DPDK's crypto_aesni_gcm PMD calls) sealing or opening
 * one buffer after another in place, 8-byte AAD, 16-byte tag, rates per CPU-second of this
 * thread (CLOCK_THREAD_CPUTIME_ID) and per wall second, so that it compares with wirespeed's
 * figures on a machine shared with other jobs.
 * It cycles over BUFFERS buffers (default 32, the working set of the batch32 ids; 1 keeps one
 * buffer in L1).
 * Usage: ipsecmb_gcm_peer SIZE SECONDS [BUFFERS]   Prints one line per direction. */
#include <intel-ipsec-mb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t len = argc > 1 ? strtoul(argv[1], 0, 10) : 1420;
    double secs = argc > 2 ? atof(argv[2]) : 3;
    int nbuf = argc > 3 ? atoi(argv[3]) : 32;
    if (nbuf < 1) nbuf = 1;
    IMB_MGR *m = alloc_mb_mgr(0);
    IMB_ARCH arch;
    init_mb_mgr_auto(m, &arch);
    static const char *names[] = {"none", "noaesni", "sse", "avx", "avx2", "avx512"};
    uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct gcm_key_data k __attribute__((aligned(64)));
    struct gcm_context_data ctx;
    IMB_AES128_GCM_PRE(m, key, &k);
    uint8_t iv[12] = {0}, aad[8] = {0}, tag[16];
    size_t stride = (len + 63) / 64 * 64 + 64;
    uint8_t *bufs = aligned_alloc(64, stride * nbuf);
    memset(bufs, 0x5a, stride * nbuf);
    for (int dec = 0; dec < 2; dec++) {
        uint64_t ops = 0;
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
        while (now(CLOCK_MONOTONIC) - w0 < secs) {
            for (int i = 0; i < 4096; i++) {
                uint8_t *buf = bufs + stride * (i % nbuf);
                iv[0] = (uint8_t)i;
                if (dec)
                    IMB_AES128_GCM_DEC(m, &k, &ctx, buf, buf, len, iv, aad, 8, tag, 16);
                else
                    IMB_AES128_GCM_ENC(m, &k, &ctx, buf, buf, len, iv, aad, 8, tag, 16);
            }
            ops += 4096;
        }
        double cpu = now(CLOCK_THREAD_CPUTIME_ID) - c0, wall = now(CLOCK_MONOTONIC) - w0;
        printf("ipsecmb_aes128gcm_%s_%zuB (%s, %d buffers): %.2f Mops = %.2f Gbps per CPU-second; %.2f Mops per wall "
               "second (%.2f s CPU of %.2f s wall)\n",
               dec ? "decrypt" : "encrypt", len, names[arch < 6 ? arch : 0], nbuf, ops / cpu / 1e6,
               ops * len * 8 / cpu / 1e9, ops / wall / 1e6, cpu, wall);
    }
    free(bufs);
    free_mb_mgr(m);
    return 0;
}
