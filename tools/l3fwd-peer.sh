#!/usr/bin/env bash
# Builds and runs the C/DPDK peer of `pipeline/l3fwd` (benches/peers/l3fwd_peer.c) on net_null
# ports, one forwarding core. Prints "l3fwd_peer_mpps N Mpps/core (...)".
# Usage: tools/l3fwd-peer.sh [SECONDS]   (needs dpdk-dev / libdpdk-dev and pkg-config)
set -eu
cd "$(dirname "$0")/.."
mkdir -p target/peers
gcc -O3 -march=native -o target/peers/l3fwd_peer benches/peers/l3fwd_peer.c \
  $(pkg-config --cflags --libs libdpdk)
target/peers/l3fwd_peer --no-huge -m 1024 -l 1 --no-pci --no-shconf --log-level=error \
  --vdev=net_null0,copy=0 --vdev=net_null1,copy=0 -- "${1:-5}"
