#!/usr/bin/env bash
# Builds and runs the C/DPDK peer of `pipeline/l3fwd` (benches/peers/l3fwd_peer.c) on net_null
# ports, one forwarding core: first its l3fwd work, then its copy baseline (the counterpart of
# `pipeline/null_copy_baseline`). Prints, per mode, "NAME_mpps N Mpps/core (...)" (wall clock)
# and "NAME_cpu_mpps N Mpps/CPU-s (...)" (per CPU-second of the forwarding thread), NAME being
# l3fwd_peer or l3fwd_peer_copy_baseline.
# Usage: tools/l3fwd-peer.sh [SECONDS] [MODES]   (MODES: "l3fwd copy" by default;
#        needs dpdk-dev / libdpdk-dev and pkg-config)
set -eu
cd "$(dirname "$0")/.."
mkdir -p target/peers
bin=target/peers/l3fwd_peer
if [ ! -x "$bin" ] || [ benches/peers/l3fwd_peer.c -nt "$bin" ]; then
  gcc -O3 -march=native -o "$bin" benches/peers/l3fwd_peer.c $(pkg-config --cflags --libs libdpdk)
fi
for mode in ${2:-l3fwd copy}; do
  "$bin" --no-huge -m 1024 -l 1 --no-pci --no-shconf --log-level=error \
    --vdev=net_null0,copy=0 --vdev=net_null1,copy=0 -- "${1:-5}" "$mode"
done
