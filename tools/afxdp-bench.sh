#!/usr/bin/env bash
# pps forwarded back out through AF_XDP on a veth pair (copy-mode socket on driver-mode XDP, and
# generic/SKB mode; zero-copy is attempted and reported), next to the kernel's own IPv4
# forwarding between the same two namespaces. Root only (netns, veth, bpf).
# Usage: tools/afxdp-bench.sh [SECONDS] [FRAME_BYTES] [ROUNDS]
set -u
cd "$(dirname "$0")/.."
secs=${1:-5}
size=${2:-64}
rounds=${3:-3}
[ "$(id -u)" -eq 0 ] || { echo "afxdp-bench: needs root (network namespaces, veth, bpf)" >&2; exit 1; }
cargo build -q --release -p wirespeed-afxdp --example afxdp_bench || exit 1
bin=target/release/examples/afxdp_bench
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
# Interleave the modes so a change in machine load hits them alike.
for r in $(seq "$rounds"); do
  for mode in kernel afxdp-copy afxdp-skb afxdp-zerocopy; do
    echo "--- round $r: $mode"
    "$bin" "$mode" "$secs" "$size" 2>&1 | grep -E 'Mpps|reflector:|refused|unavailable|Error' || true
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
