#!/usr/bin/env bash
# Measures the peer anchors on this machine (DPDK from Debian, OpenSSL), one figure a line:
#   NAME VALUE UNIT [note]
# Usage: peer-anchors.sh [io] [5tswap] [softrss] [ipsecmb] [openssl]   (no argument: all)
# Needs: tools/install-peers.sh (dpdk, openssl).
#
# Each rate comes twice where the peer runs on its own thread: per wall-clock second (NAME) and
# per CPU-second of the peer's forwarding/crypto thread (NAME with `_cpu` before the unit part),
# so a machine shared with other jobs is not counted against the peer:
# - testpmd and dpdk-test-crypto-perf: the CPU time of their worker lcore thread (`rte-worker-*`,
#   from /proc/PID/task/TID/schedstat, nanoseconds) over the window of the wall figure; the
#   per-CPU-second rate is the wall rate divided by the thread's share of the wall time
#   (CPU time ÷ wall time) over that window.
# - OpenSSL: `openssl speed` divides by its own user CPU time already (that is its default
#   figure, `_gbps`); `-elapsed` gives the wall-clock one (`_elapsed_gbps`).
# - rte_softrss: `dpdk-test` reports TSC cycles per call over a short loop (wall clock); no CPU
#   time figure.
set -u
EAL="--no-huge -m 1024 -l 0,1 --no-pci --no-shconf"

# Sum of the on-CPU nanoseconds (schedstat field 1) of the threads of $1 whose name matches the
# extended regex $2; empty when none is found.
thread_cpu_ns() {
  local t comm ns sum="" a
  for t in /proc/"$1"/task/*; do
    read -r comm <"$t/comm" 2>/dev/null || continue
    [[ $comm =~ $2 ]] || continue
    read -r ns a <"$t/schedstat" 2>/dev/null || continue
    sum=$(( ${sum:-0} + ns ))
  done
  echo "$sum"
}

now_ns() { local t=${EPOCHREALTIME/./}; echo "${t}000"; }

# $1 forward mode, $2 vdev args -> "WALL_MPPS CPU_MPPS SHARE": total Mpps on one forwarding core
# (mean of the per-second Rx-pps samples printed inside the window), the same per CPU-second of
# the forwarding lcore thread, and that thread's share of the wall time in the window.
pps() {
  local log tpid pid i a_t a_c a_n b_t b_c b_n dir w
  dir=$(mktemp -d); log=$dir/log
  # With --stats-period testpmd forwards until SIGINT (sent right after the window; timeout is
  # only the safety net), then reads stdin: a FIFO whose write end this shell closes then.
  mkfifo "$dir/in"
  timeout -s INT 90 dpdk-testpmd $EAL $2 -- --forward-mode=$1 --stats-period=1 \
    --auto-start --nb-cores=1 --total-num-mbufs=8192 <"$dir/in" >"$log" 2>&1 &
  tpid=$!
  exec {w}>"$dir/in"
  pid=""
  for i in $(seq 600); do
    pid=$(pgrep -P "$tpid" -x dpdk-testpmd) && grep -q Rx-pps "$log" && break
    sleep 0.05
  done
  sleep 2 # warm-up: forwarding has been running for 2 s
  a_t=$(now_ns); a_c=$(thread_cpu_ns "$pid" '^rte-worker'); a_n=$(grep -c Rx-pps "$log")
  sleep 7
  b_t=$(now_ns); b_c=$(thread_cpu_ns "$pid" '^rte-worker'); b_n=$(grep -c Rx-pps "$log")
  [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
  exec {w}>&-
  wait "$tpid" 2>/dev/null
  # No thread found at either end: no per-CPU-second figure (dc = 0 prints n/a).
  [ -n "$a_c" ] && [ -n "$b_c" ] || { a_c=0; b_c=0; }
  awk -v a=$a_n -v b=$b_n -v dc=$((b_c - a_c)) -v dt=$((b_t - a_t)) '
    /Rx-pps/ {n++; if (n > a && n <= b) {s += $2; c++}}
    END {
      if (!c) {print "n/a n/a n/a"; exit}
      w = 2 * s / c / 1e6; share = dc / dt
      if (share > 0) printf "%.2f %.2f %.3f\n", w, w / share, share; else printf "%.2f n/a n/a\n", w
    }' "$log"
  rm -rf "$dir"
}

# $1 forward mode, $2 vdev args, $3 name: prints the wall and the per-CPU-second lines.
testpmd_anchor() {
  local r
  read -r -a r <<<"$(pps "$1" "$2")"
  echo "$3 ${r[0]} Mpps/core"
  echo "${3%_mpps}_cpu_mpps ${r[1]} Mpps/CPU-s (forwarding thread on a CPU ${r[2]} of the window)"
}

# $1 pmd $2 algo $3 keylen $4 label $5 buffer size $6 ops. One buffer size per process, so the
# worker thread's busy interval is that size's test alone. The worker is sampled every 20 ms
# while the process lives; its share of the wall time is taken over its busy interval (first
# to last sample in which its CPU time grew), and the per-CPU-second rate is the tool's own
# (TSC, wall-clock) rate divided by that share.
cperf() {
  local log samples tpid pid i c
  log=$(mktemp); samples=$(mktemp)
  timeout 180 dpdk-test-crypto-perf $EAL --vdev ${1}0 -- --ptest throughput --devtype $1 --optype aead \
    --aead-algo $2 --aead-key-sz $3 --aead-iv-sz 12 --aead-op encrypt --aead-aad-sz 8 --digest-sz 16 \
    --buffer-sz $5 --total-ops $6 --burst-sz 32 >"$log" 2>/dev/null &
  tpid=$!
  pid=""
  for i in $(seq 400); do
    pid=$(pgrep -P "$tpid" -x dpdk-test-crypt) && break
    sleep 0.02
  done
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
    c=$(thread_cpu_ns "$pid" '^rte-worker')
    [ -n "$c" ] && echo "$(now_ns) $c" >>"$samples"
    sleep 0.02
  done
  wait "$tpid" 2>/dev/null
  local share
  share=$(awk 'NR == 1 {c0 = $2; t0 = $1; prev_t = $1; next}
    $2 > c0 && !start {start = prev_t; cs = c0}
    $2 > last_c {last_c = $2; end = $1}
    {prev_t = $1; if (!start) c0 = $2}
    END {if (start && end > start) printf "%.4f", (last_c - cs) / (end - start); else print "n/a"}' "$samples")
  awk -v l=$4 -v sz=$5 -v share=$share '
    $2 == sz && sz == 64 {v = $8; u = "Mops"} $2 == sz && sz != 64 {v = $9; u = "Gbps"}
    END {
      if (v == "") exit
      print l "_" sz "B_" (u == "Mops" ? "mops" : "gbps"), v, u "/core"
      if (share != "n/a" && share > 0)
        printf "%s_%sB_cpu_%s %.2f %s/CPU-s (worker thread on a CPU %.3f of its busy interval)\n", l, sz, (u == "Mops" ? "mops" : "gbps"), v / share, u, share
    }' "$log"
  rm -f "$log" "$samples"
}

ALL="$*"
want() { [[ " $ALL " == *" $1 "* ]]; }
if [ -z "$ALL" ] || want io; then testpmd_anchor io '--vdev=net_null0 --vdev=net_null1' testpmd_io_null_mpps; fi
if [ -z "$ALL" ] || want 5tswap; then
  testpmd_anchor 5tswap '--vdev=net_null0,copy=1 --vdev=net_null1,copy=1' testpmd_5tswap_null_copy_mpps
fi
if [ -z "$ALL" ] || want softrss; then
  # Limit 300 s: the autotest took 46 s at load 5.7, and 60 s ran out at load 14.
  echo "thash_perf_autotest" | timeout 300 dpdk-test $EAL 2>/dev/null |
    awk '/rte_softrss\(\) takes/ && /key len 12/ {print "rte_softrss_ipv4_4tuple_cycles", $4, "cycles"}
         /rte_softrss\(\) takes/ && /key len 36/ {print "rte_softrss_ipv6_4tuple_cycles", $4, "cycles"}'
fi
if [ -z "$ALL" ] || want ipsecmb; then
  # Ops sized for about a second of worker time per test (more when the machine is loaded), so
  # the 20 ms sampling of the worker bounds its busy interval to a few per cent.
  cperf crypto_aesni_gcm aes-gcm 16 ipsecmb_aes128gcm 64 20000000
  cperf crypto_aesni_gcm aes-gcm 16 ipsecmb_aes128gcm 1420 6000000
  cperf crypto_aesni_mb chacha20-poly1305 32 ipsecmb_chacha20poly1305 64 6000000
  cperf crypto_aesni_mb chacha20-poly1305 32 ipsecmb_chacha20poly1305 1420 2000000
fi
if [ -z "$ALL" ] || want openssl; then
  for a in aes-128-gcm chacha20-poly1305; do
    for b in 64 1420; do
      # Default: bytes per second of openssl's own user CPU time; -elapsed: per wall-clock second.
      v=$(timeout 30 openssl speed -seconds 2 -bytes $b -evp $a 2>/dev/null | tail -1 | awk '{print $2}' | tr -d k)
      echo "openssl_${a}_${b}B_gbps $(awk -v v=$v 'BEGIN{printf "%.2f", v*1000*8/1e9}') Gbps/CPU-s"
      v=$(timeout 30 openssl speed -elapsed -seconds 2 -bytes $b -evp $a 2>/dev/null | tail -1 | awk '{print $2}' | tr -d k)
      echo "openssl_${a}_${b}B_elapsed_gbps $(awk -v v=$v 'BEGIN{printf "%.2f", v*1000*8/1e9}') Gbps/core"
    done
  done
fi
