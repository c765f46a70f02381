#!/usr/bin/env bash
# Runs the peer anchors (DPDK testpmd, rte_softrss, intel-ipsec-mb, OpenSSL, the C l3fwd peer)
# and wirespeed's criterion benches on this machine, so BENCHMARKS.md compares figures from one
# run, wall-clock and per CPU-second of each side's worker thread.
# Usage: tools/bench-vs-peers.sh [OUT_DIR]   (installs the peers with apt)
#
# Round 1: every peer anchor, then every bench file (each id twice: `group/...` wall clock and
# `cpu/group/...` the bench thread's CPU time). Rounds 2..ROUNDS (ROUNDS=3 by default): the
# head-to-head pairs again, peer then ours, interleaved — testpmd io, the l3fwd peer and its
# copy baseline, intel-ipsec-mb against pipeline/{null_io,l3fwd,null_copy_baseline,dpdk_null_io},
# runtime/null_io_1shard and the esp batch32 ids they are compared with. Then
# tools/bench-summary.sh prints the medians over the rounds and both kinds of ratio
# (OUT_DIR/summary.txt). The load average is recorded at the start and at the end.
#
# Env: BENCH_FILTER narrows the criterion ids of round 1 (a regex, e.g. 'batch32|null_io');
# ROUNDS as above; BENCH_TIMES="WARMUP MEASURE" seconds per criterion id (default "2 5").
# Exits non-zero, naming the bench file, when a bench binary fails: a partial table is not
# published as if it were whole.
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-vs-peers}
rounds=${ROUNDS:-3}
read -r warm measure <<<"${BENCH_TIMES:-2 5}"
rm -rf "$out"/round*
mkdir -p "$out"
peers=tools
if ! command -v dpdk-testpmd >/dev/null; then
  bash "$peers/install-peers.sh"
  # Debian ships testpmd, dpdk-test and dpdk-test-crypto-perf in dpdk-dev, not in dpdk.
  command -v dpdk-testpmd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpdk-dev >/dev/null
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, cpu MHz $(awk -F: '/^cpu MHz/ {print $2+0; exit}' /proc/cpuinfo)" | tee "$out/machine.txt"
echo "start: $(date -u '+%F %T') UTC, load average $(load)" | tee -a "$out/machine.txt"
# `accel` adds the ring provider; `dpdk` adds pipeline/dpdk_null_io (needs libdpdk-dev).
features=accel
pkg-config --exists libdpdk 2>/dev/null && features=accel,dpdk
# Build every bench binary first, so compiling does not run inside a measured window.
cargo bench -p wirespeed-benches --features "$features" --no-run >"$out/build.log" 2>&1 ||
  { echo "ERROR: the benches do not build (see $out/build.log)" >&2; tail -5 "$out/build.log" >&2; exit 1; }

failed=()
# $1 round dir, $2 bench file, $3 criterion filter (may be empty).
bench() {
  local dir=$1 b=$2 filter=$3 status
  [ -f "benches/benches/$b.rs" ] || return 0
  cargo bench -p wirespeed-benches --features "$features" --bench "$b" -- \
    --warm-up-time "$warm" --measurement-time "$measure" ${filter:+"$filter"} >"$dir/$b.log" 2>&1
  status=$?
  grep -E '^[a-z0-9_/.]+ +time:|^ +thrpt:|^[a-z0-9_/.]+$|^ +time:|cycles|per CPU' "$dir/$b.log" | tee "$dir/$b.txt"
  if [ "$status" -ne 0 ]; then
    echo "ERROR: bench '$b' exited with status $status; its table is incomplete (see $dir/$b.log):" >&2
    tail -5 "$dir/$b.log" >&2
    failed+=("$b")
  fi
}

r1="$out/round1"
mkdir -p "$r1"
echo "== round 1: peers, load $(load)"
bash "$peers/peer-anchors.sh" | tee "$r1/peers.txt"
# The like-for-like peer of pipeline/l3fwd (same per-packet work in C on net_null) and its copy
# baseline (the counterpart of pipeline/null_copy_baseline).
bash tools/l3fwd-peer.sh 5 | tee -a "$r1/peers.txt"
# intel-ipsec-mb's raw AES-128-GCM per CPU-second of its thread and per wall second, over 32
# buffers: the like-for-like of `cpu/esp/aead_*_batch32_aes128gcm_*` and the esp batch32 ids.
bash tools/ipsecmb-peer.sh 3 | tee -a "$r1/peers.txt"
echo "== round 1: wirespeed, load $(load)"
for b in pipeline runtime dispatch toeplitz stages esp gateway xfrm; do
  bench "$r1" "$b" "${BENCH_FILTER:-}"
done

for ((r = 2; r <= rounds; r++)); do
  d="$out/round$r"
  mkdir -p "$d"
  echo "== round $r: peers, load $(load)"
  { bash "$peers/peer-anchors.sh" io ipsecmb; bash tools/l3fwd-peer.sh 5; } | tee "$d/peers.txt"
  echo "== round $r: wirespeed, load $(load)"
  bench "$d" pipeline '^(cpu/)?pipeline/(null_io|l3fwd|null_copy_baseline|dpdk_null_io)$'
  bench "$d" runtime '^runtime/null_io_1shard$'
  bench "$d" esp '^(cpu/)?esp/encrypt_batch32_(aes128gcm/(64|1420)|chacha20poly1305/1420)$'
done
echo "end: $(date -u '+%F %T') UTC, load average $(load)" | tee -a "$out/machine.txt"

bash tools/bench-summary.sh "$out" | tee "$out/summary.txt"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "ERROR: ${#failed[@]} bench run(s) failed: ${failed[*]}; do not publish these figures." >&2
  exit 1
fi
