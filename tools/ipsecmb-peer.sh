#!/usr/bin/env bash
# Builds and runs the raw-AEAD peer of the esp AES-128-GCM ids (benches/peers/ipsecmb_gcm_peer.c):
# intel-ipsec-mb's AES-128-GCM sealing and opening one buffer after another, rates per CPU-second
# of its thread and per wall second. Usage: tools/ipsecmb-peer.sh [SECONDS]
# (needs libipsec-mb-dev, which tools/install-peers.sh installs with DPDK's crypto PMDs)
set -eu
cd "$(dirname "$0")/.."
mkdir -p target/peers
gcc -O2 -o target/peers/ipsecmb_gcm_peer benches/peers/ipsecmb_gcm_peer.c -lIPSec_MB
for size in 64 1420; do
  target/peers/ipsecmb_gcm_peer "$size" "${1:-3}"
done
