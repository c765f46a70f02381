#!/usr/bin/env bash
# Runs the peer anchors (DPDK testpmd, rte_softrss, intel-ipsec-mb, OpenSSL) and wirespeed's
# criterion benches back to back on this machine, so BENCHMARKS.md compares figures from one run.
# Usage: tools/bench-vs-peers.sh [OUT_DIR]   (installs the peers with apt)
# Exits non-zero, naming the bench file, when a bench binary fails: a partial table is not
# published as if it were whole.
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-vs-peers}
mkdir -p "$out"
peers=tools
if ! command -v dpdk-testpmd >/dev/null; then
  bash "$peers/install-peers.sh"
  # Debian ships testpmd, dpdk-test and dpdk-test-crypto-perf in dpdk-dev, not in dpdk.
  command -v dpdk-testpmd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpdk-dev >/dev/null
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/machine.txt"
bash "$peers/peer-anchors.sh" | tee "$out/peers.txt"
# The like-for-like peer of pipeline/l3fwd (same per-packet work in C on net_null).
bash tools/l3fwd-peer.sh 5 | tee -a "$out/peers.txt"
# intel-ipsec-mb's raw AES-128-GCM per CPU-second of its thread and per wall second; on a loaded
# machine compare the per-CPU-second figure with the esp batch ids run with
# WIRESPEED_BENCH_CLOCK=cpu (the thread's CPU clock).
bash tools/ipsecmb-peer.sh 3 | tee -a "$out/peers.txt"
# Quick but stable enough: 2 s warm-up, 5 s measurement per bench. BENCH_FILTER narrows the
# criterion ids (a regex), e.g. BENCH_FILTER='batch32|null_io' tools/bench-vs-peers.sh.
# `accel` adds the ring provider; `dpdk` adds pipeline/dpdk_null_io (needs libdpdk-dev).
features=accel
pkg-config --exists libdpdk 2>/dev/null && features=accel,dpdk
failed=()
for b in pipeline runtime dispatch toeplitz stages esp gateway; do
  [ -f "benches/benches/$b.rs" ] || continue
  cargo bench -p wirespeed-benches --features "$features" --bench "$b" -- --warm-up-time 2 --measurement-time 5 ${BENCH_FILTER:+"$BENCH_FILTER"} >"$out/$b.log" 2>&1
  status=$?
  grep -E '^[a-z0-9_/.]+ +time:|^ +thrpt:|^[a-z0-9_/.]+$|^ +time:|cycles|per CPU' "$out/$b.log" | tee "$out/$b.txt"
  if [ "$status" -ne 0 ]; then
    echo "ERROR: bench '$b' exited with status $status; its table is incomplete (see $out/$b.log):" >&2
    tail -5 "$out/$b.log" >&2
    failed+=("$b")
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "ERROR: ${#failed[@]} bench file(s) failed: ${failed[*]}; do not publish these figures." >&2
  exit 1
fi
