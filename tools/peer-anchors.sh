#!/usr/bin/env bash
# Measures the peer anchors on this machine (DPDK from Debian, OpenSSL), one figure a line:
#   NAME VALUE UNIT
# Usage: anchors.sh [io] [5tswap] [softrss] [ipsecmb] [openssl]   (no argument: all)
# Needs: tools/install-peers.sh (dpdk, openssl).
set -u
EAL="--no-huge -m 1024 -l 0,1 --no-pci --no-shconf"
pps() { # $1 forward mode, $2 vdev args -> total Mpps on one forwarding core (mean of last samples)
  (sleep 8 | timeout -s INT 12 dpdk-testpmd $EAL $2 -- --forward-mode=$1 --stats-period=1 \
      --auto-start --nb-cores=1 --total-num-mbufs=8192 2>&1) |
    awk '/Rx-pps/ {v[n++]=$2} END {s=0; c=0; for (i=n-6;i<n;i++) if (i>=0) {s+=v[i]; c++}; if (c) printf "%.2f", 2*s/c/1e6}'
}
cperf() { # $1 pmd $2 algo $3 keylen $4 label
  timeout 120 dpdk-test-crypto-perf $EAL --vdev ${1}0 -- --ptest throughput --devtype $1 --optype aead \
    --aead-algo $2 --aead-key-sz $3 --aead-iv-sz 12 --aead-op encrypt --aead-aad-sz 8 --digest-sz 16 \
    --buffer-sz 64,1420 --total-ops 3000000 --burst-sz 32 2>/dev/null |
    awk -v l=$4 '$2==64 {print l"_64B_mops", $8, "Mops/core"} $2==1420 {print l"_1420B_gbps", $9, "Gbps/core"}'
}
ALL="$*"
want() { [[ " $ALL " == *" $1 "* ]]; }
if [ -z "$ALL" ] || want io; then echo "testpmd_io_null_mpps $(pps io '--vdev=net_null0 --vdev=net_null1') Mpps/core"; fi
if [ -z "$ALL" ] || want 5tswap; then echo "testpmd_5tswap_null_copy_mpps $(pps 5tswap '--vdev=net_null0,copy=1 --vdev=net_null1,copy=1') Mpps/core"; fi
if [ -z "$ALL" ] || want softrss; then
  echo "thash_perf_autotest" | timeout 60 dpdk-test $EAL 2>/dev/null |
    awk '/rte_softrss\(\) takes/ && /key len 12/ {print "rte_softrss_ipv4_4tuple_cycles", $4, "cycles"}
         /rte_softrss\(\) takes/ && /key len 36/ {print "rte_softrss_ipv6_4tuple_cycles", $4, "cycles"}'
fi
if [ -z "$ALL" ] || want ipsecmb; then
  cperf crypto_aesni_gcm aes-gcm 16 ipsecmb_aes128gcm
  cperf crypto_aesni_mb chacha20-poly1305 32 ipsecmb_chacha20poly1305
fi
if [ -z "$ALL" ] || want openssl; then
  for a in aes-128-gcm chacha20-poly1305; do
    for b in 64 1420; do
      v=$(timeout 30 openssl speed -seconds 2 -bytes $b -evp $a 2>/dev/null | tail -1 | awk '{print $2}' | tr -d k)
      echo "openssl_${a}_${b}B_gbps $(awk -v v=$v 'BEGIN{printf "%.2f", v*1000*8/1e9}') Gbps/core"
    done
  done
fi
