#!/usr/bin/env bash
# AF_XDP forwarding: wirespeed against a C forwarder on libxdp (benches/peers/afxdp_fwd.c), with
# the kernel's own IPv4 forwarding as the reference, on veth pairs across three namespaces:
#
#   G: afpacket_gen --veth-- F: forwarder (IN=f0 -> OUT=f1) --veth-- S: sink (counts)
#
# References: the kernel's own IPv4 forwarding (`kernel`) and an XDP program on f0 that swaps
# the MACs and bpf_redirect()s every frame to f1 (`xdp`, benches/peers/xdp_redirect.c): the
# forwarding then runs entirely in f0's NAPI, with no socket and no copy to user space.
# `ws-esp` rows run the ESP gateway's stages on AF_XDP instead of the MAC swap (the generator
# then sends from the fixture's LAN host 10.0.1.5 to 10.9.0.9; every frame leaves as ESP,
# AES-256-GCM): at saturation with `spin`, and at 40 kpps with `adaptive`.
#
# Each forwarder takes queue 0 of f0, copies every frame into a frame of f1's UMEM, swaps the
# MAC addresses and sends it out of f1; copy-mode sockets, need_wakeup, batch 32, XDP in driver
# (drv) or generic (skb) mode. TSO is off on every sending end and GRO on every receiving one,
# so veth runs NAPI (and pushes back when its ring is full); NAPI is threaded and its threads
# pinned: f0's (which copies into the forwarder's UMEM) on the forwarder's core, s0's on the
# generator's. The generator (benches/peers/afpacket_gen.c, AF_PACKET, qdisc bypass) runs on
# its own core at RATE packets/s ("max": as fast as it can, which outpaces every forwarder).
#
# Per run, after a 1 s warm-up, over SECONDS: offered rate (g0's tx counter), delivered rate
# (s0's rx counter), and CPU time per thread (/proc/PID/task/*/schedstat) of the forwarder
# process and of f0's NAPI thread, per delivered packet. Runs are interleaved so a change in
# machine load hits all alike. Root only; needs gcc, libxdp-dev, libbpf-dev, ethtool.
#
# Usage: tools/afxdp-bench.sh [SECONDS] [ROUNDS]
# Env:   SIZES="64 1500"  RATES="max 40000"  IDLES="spin busy-poll block adaptive"
#        MODES="drv skb"  FWD_CPU=0  GEN_CPU=1  ESP_SIZES="64 1400" (empty: no ESP rows)
set -u
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-2}
sizes=${SIZES:-64 1500}
rates=${RATES:-max 40000}
idles=${IDLES:-spin busy-poll block adaptive}
modes=${MODES:-drv skb}
fwd_cpu=${FWD_CPU:-0}
gen_cpu=${GEN_CPU:-1}
esp_sizes=${ESP_SIZES-64 1400}
[ "$(id -u)" -eq 0 ] || { echo "afxdp-bench: needs root (network namespaces, veth, bpf)" >&2; exit 1; }
for t in gcc pkg-config ethtool; do
  command -v $t >/dev/null || { echo "afxdp-bench: needs $t" >&2; exit 1; }
done
cargo build -q --release -p wirespeed-afxdp --example afxdp_bench || exit 1
ws=target/release/examples/afxdp_bench
mkdir -p target/peers
gcc -O2 -o target/peers/afxdp_fwd benches/peers/afxdp_fwd.c $(pkg-config --cflags --libs libxdp libbpf) || exit 1
gcc -O2 -o target/peers/afpacket_gen benches/peers/afpacket_gen.c || exit 1
gcc -O2 -o target/peers/xdp_redirect benches/peers/xdp_redirect.c $(pkg-config --cflags --libs libbpf) || exit 1
cfwd=target/peers/afxdp_fwd
xredir=target/peers/xdp_redirect
gen=target/peers/afpacket_gen
log=$(mktemp -d)
pids=
# Stops this run's generator and forwarder (by pid), then waits for them.
stop_all() {
  local p
  for p in $pids; do kill "$p" 2>/dev/null; done
  for p in $pids; do wait "$p" 2>/dev/null; done
  pids=
}
trap 'stop_all; teardown; rm -rf "$log"' EXIT
trap 'exit 1' INT TERM

nsx() { ip netns exec "$@"; }
teardown() {
  for n in wsbg wsbf wsbs; do ip netns del $n 2>/dev/null; done
  return 0
}
stat_of() { nsx "$1" cat "/sys/class/net/$2/statistics/$3"; }
# CPU nanoseconds of every thread of process $1 (schedstat field 1).
# (printf, not print: mawk prints sums past 2^31 as 3.4e+09, which shell arithmetic refuses.)
cpu_of_pid() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'; }
napi_pid() { for p in /proc/[0-9]*; do grep -q "^napi/$1-" "$p/comm" 2>/dev/null && { basename "$p"; return; }; done; }
mac_of() { nsx "$1" cat "/sys/class/net/$2/address"; }

setup() {
  teardown
  for n in wsbg wsbf wsbs; do ip netns add $n; ip -n $n link set lo up; done
  ip link add g0 netns wsbg type veth peer name f0 netns wsbf
  ip link add f1 netns wsbf type veth peer name s0 netns wsbs
  for x in "wsbg g0" "wsbf f0" "wsbf f1" "wsbs s0"; do
    set -- $x
    nsx "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    nsx "$1" ethtool -K "$2" tso off gro on >/dev/null 2>&1
    ip -n "$1" link set "$2" up
  done
  # GRO switched on while s0 was down enabled its NAPI but did not make f1 a target of XDP
  # redirects (veth sets that only when GRO changes on a running device): toggle it once more.
  nsx wsbs ethtool -K s0 gro off >/dev/null 2>&1
  nsx wsbs ethtool -K s0 gro on >/dev/null 2>&1
  for x in "wsbf f0" "wsbs s0"; do
    set -- $x
    nsx "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"
  done
}

pin_napi() {
  local p
  p=$(napi_pid f0); [ -n "$p" ] && taskset -pc "$fwd_cpu" "$p" >/dev/null
  p=$(napi_pid s0); [ -n "$p" ] && taskset -pc "$gen_cpu" "$p" >/dev/null
}

kernel_forwarding() {
  ip -n wsbf addr add 10.1.0.1/24 dev f0
  ip -n wsbf addr add 10.2.0.1/24 dev f1
  nsx wsbf sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.f0.rp_filter=0
  ip -n wsbf neigh replace 10.2.0.9 lladdr "$(mac_of wsbs s0)" dev f1 nud permanent
}

# run PEER MODE IDLE SIZE RATE: one measurement; prints one result line.
run() {
  local peer=$1 mode=$2 idle=$3 size=$4 rate=$5 pid
  : >"$log/fwd"
  setup
  # `ip netns exec` execs the command, so $! is the process itself (a backgrounded shell
  # function would be a subshell whose child outlives a kill).
  case $peer in
    c) ip netns exec wsbf taskset -c "$fwd_cpu" "$cfwd" f0 f1 "$mode" >"$log/fwd" 2>&1 & pid=$! ;;
    wirespeed) ip netns exec wsbf "$ws" f0 f1 "$mode" "$idle" "$fwd_cpu" >"$log/fwd" 2>&1 & pid=$! ;;
    ws-esp) ip netns exec wsbf "$ws" f0 f1 "$mode" "$idle" "$fwd_cpu" esp >"$log/fwd" 2>&1 & pid=$! ;;
    xdp) ip netns exec wsbf "$xredir" f0 f1 "$mode" >"$log/fwd" 2>&1 & pid=$! ;;
    kernel) kernel_forwarding; pid= ;;
  esac
  local ips=; [ "$peer" = ws-esp ] && ips="10.0.1.5 10.9.0.9"
  pids="$pid"
  sleep 1.5
  pin_napi
  local grate=$rate; [ "$rate" = max ] && grate=0
  local dmac smac; dmac=$(mac_of wsbf f0); smac=$(mac_of wsbg g0)
  # shellcheck disable=SC2086 # $ips is two words or none
  ip netns exec wsbg taskset -c "$gen_cpu" "$gen" g0 "$dmac" "$smac" "$size" "$grate" $ips >"$log/gen" 2>&1 &
  local gpid=$!
  pids="$pids $gpid"
  sleep 1
  local target=$pid
  local napi; napi=$(napi_pid f0)
  local o0 d0 c0 n0 o1 d1 c1 n1
  o0=$(stat_of wsbg g0 tx_packets); d0=$(stat_of wsbs s0 rx_packets)
  c0=$([ -n "$target" ] && cpu_of_pid "$target" || echo 0); n0=$(cpu_of_pid "$napi")
  sleep "$secs"
  o1=$(stat_of wsbg g0 tx_packets); d1=$(stat_of wsbs s0 rx_packets)
  c1=$([ -n "$target" ] && cpu_of_pid "$target" || echo 0); n1=$(cpu_of_pid "$napi")
  stop_all
  local last; last=$(grep -E '^(wirespeed|afxdp_fwd) rx' "$log/fwd" | tail -1)
  awk -v peer="$peer" -v mode="$mode" -v idle="$idle" -v size="$size" -v rate="$rate" -v s="$secs" \
      -v o=$((o1 - o0)) -v d=$((d1 - d0)) -v c=$((c1 - c0)) -v n=$((n1 - n0)) -v last="$last" 'BEGIN {
    dp = d > 0 ? d : 1
    printf "%-9s %-3s %-9s %5d B  offered %6.3f Mpps  delivered %6.3f Mpps  fwd CPU %5.2f us/pkt (%3.0f%%)  napi(f0) %5.2f us/pkt (%3.0f%%)  [%s]\n",
      peer, mode, (peer == "wirespeed" || peer == "ws-esp" ? idle : "-"), size, o / s / 1e6, d / s / 1e6,
      c / 1e3 / dp, 100 * c / 1e9 / s, n / 1e3 / dp, 100 * n / 1e9 / s, last
  }'
  case $peer in wirespeed|ws-esp) grep -m1 '^wirespeed:' "$log/fwd" | grep -q 'Generic' && [ "$mode" = drv ] && echo "  (note: driver mode refused)";; esac
  teardown
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "forwarder + f0 NAPI on cpu $fwd_cpu, generator + s0 NAPI on cpu $gen_cpu; $secs s per run, $rounds rounds"
for r in $(seq "$rounds"); do
  echo "--- round $r (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for rate in $rates; do
    for size in $sizes; do
      # 40 kpps is a CPU-cost point: small frames only.
      [ "$rate" != max ] && [ "$size" != 64 ] && continue
      for mode in $modes; do
        run c "$mode" - "$size" "$rate"
        for idle in $idles; do
          # The idle policies matter in driver mode; SKB mode runs with spin only.
          [ "$mode" = skb ] && [ "$idle" != spin ] && continue
          run wirespeed "$mode" "$idle" "$size" "$rate"
        done
      done
      run kernel - - "$size" "$rate"
      for mode in $modes; do run xdp "$mode" - "$size" "$rate"; done
    done
  done
  for size in $esp_sizes; do run ws-esp drv spin "$size" max; done
  [ -n "$esp_sizes" ] && run ws-esp drv adaptive 64 40000
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
