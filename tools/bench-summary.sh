#!/usr/bin/env bash
# Summarises a tools/bench-vs-peers.sh run: the median over its rounds of each head-to-head
# figure, wall-clock and per CPU-second of each side's worker thread, and their ratios.
# Usage: tools/bench-summary.sh [OUT_DIR]   (default target/bench-vs-peers)
#
# Inputs, per round directory OUT_DIR/round<N>/: peers.txt ("NAME VALUE UNIT ..." lines of
# peer-anchors.sh and l3fwd-peer.sh) and the criterion logs *.log (ids `group/...` timed by the
# wall clock, `cpu/group/...` by the bench thread's CPU time). A figure missing from a round is
# left out of that figure's median; one missing from every round prints as n/a.
set -u -o pipefail
out=${1:-target/bench-vs-peers}
shopt -s nullglob
rounds=("$out"/round*/)
[ "${#rounds[@]}" -gt 0 ] || { echo "no $out/round*/ directories" >&2; exit 1; }

# One "KEY VALUE" line per figure and round: peers as they are named, criterion ids as
# "ID:ns" (time per iteration, ns) and "ID:rate" (throughput: Mpps for elements, Gbps for bytes).
figures() {
  local r=$1
  [ -f "$r/peers.txt" ] && awk '$2 ~ /^[0-9.]+$/ {print $1, $2}' "$r/peers.txt"
  for f in "$r"/*.log; do
    awk '
      function ns(v, u) { return u == "ps" ? v / 1000 : u == "ns" ? v : (u == "µs" || u == "us") ? v * 1e3 : u == "ms" ? v * 1e6 : v * 1e9 }
      function rate(v, u) {
        if (u ~ /elem\/s$/) return (u == "Gelem/s" ? v * 1e3 : u == "Melem/s" ? v : u == "Kelem/s" ? v / 1e3 : v / 1e6)
        if (u == "GiB/s") return v * 8 * 1.073741824
        if (u == "MiB/s") return v * 8 * 1.048576 / 1e3
        if (u == "GB/s") return v * 8
        return -1
      }
      /^[a-z0-9_\/.]+( |$)/ && $1 ~ /\// { id = $1 }
      {
        for (k = 1; k <= NF; k++) {
          if (id == "" || $(k + 3) ~ /%/) continue
          if ($k == "time:") { print id ":ns", ns($(k + 3), $(k + 4)); got_t = 1 }
          if ($k == "thrpt:") { r = rate($(k + 3), $(k + 4)); if (r >= 0) print id ":rate", r; got_r = 1 }
        }
        if (got_t && got_r) { id = ""; got_t = got_r = 0 }
      }
      # runtime/null_io_1shard prints its per-CPU-second rate (shard thread) itself.
      /^runtime\/null_io_1shard: .* Mpps per CPU-second/ { print "cpu/runtime/null_io_1shard:rate", $2 }
      /^gateway\/[a-z_]+: .* cycles at/ { sub(":", "", $1); print $1 ":cycles", $9 }
    ' "$f"
  done
}

all=$(for r in "${rounds[@]}"; do figures "$r"; done)
echo "rounds: ${#rounds[@]} (${rounds[*]})"
[ -f "$out/machine.txt" ] && cat "$out/machine.txt"
echo
# Medians, then the head-to-head table.
awk -v mhz="$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)" '
  { v[$1] = v[$1] " " $2 }
  function med(k,   a, n, i, j, t) {
    if (!(k in v)) return ""
    n = split(v[k], a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function nrounds(k,   a) { return (k in v) ? split(v[k], a, " ") : 0 }
  function f(x, d) { return x == "" ? "n/a" : sprintf("%." d "f", x) }
  function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2fx", a / b) }
  # ours(id): Mpps (or Gbps) wall and per CPU-second; peer(name): wall and _cpu_ figures.
  function row(label, ours, peer, peer_cpu, unit,   w, c, pw, pc) {
    w = med(ours ":rate"); c = med("cpu/" ours ":rate"); pw = med(peer); pc = med(peer_cpu)
    printf "| %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", label, f(w, 2), f(c, 2), f(pw, 2), f(pc, 2), ratio(w, pw), ratio(c, pc), nrounds(ours ":rate"), nrounds(peer)
  }
  END {
    print "Head to head (medians over rounds; ratio = wirespeed / peer, higher is better for wirespeed):"
    print ""
    print "| wirespeed id vs peer | ours wall | ours per CPU-s | peer wall | peer per CPU-s | ratio wall | ratio per CPU-s | rounds ours/peer |"
    print "|---|---|---|---|---|---|---|---|"
    row("pipeline/null_io vs testpmd io (Mpps)", "pipeline/null_io", "testpmd_io_null_mpps", "testpmd_io_null_cpu_mpps")
    row("runtime/null_io_1shard vs testpmd io (Mpps)", "runtime/null_io_1shard", "testpmd_io_null_mpps", "testpmd_io_null_cpu_mpps")
    row("pipeline/dpdk_null_io vs testpmd io (Mpps)", "pipeline/dpdk_null_io", "testpmd_io_null_mpps", "testpmd_io_null_cpu_mpps")
    row("pipeline/l3fwd vs l3fwd peer (Mpps)", "pipeline/l3fwd", "l3fwd_peer_mpps", "l3fwd_peer_cpu_mpps")
    row("pipeline/null_copy_baseline vs peer copy baseline (Mpps)", "pipeline/null_copy_baseline", "l3fwd_peer_copy_baseline_mpps", "l3fwd_peer_copy_baseline_cpu_mpps")
    row("esp/encrypt_batch32_aes128gcm/64 vs ipsec-mb 64 B (Mpps vs Mops)", "esp/encrypt_batch32_aes128gcm/64", "ipsecmb_aes128gcm_64B_mops", "ipsecmb_aes128gcm_64B_cpu_mops")
    # 1420-byte rows in Gbps of inner packet bytes: ours Mpps x 1420 x 8 / 1000.
    split("esp/encrypt_batch32_aes128gcm/1420 ipsecmb_aes128gcm_1420B esp/encrypt_batch32_chacha20poly1305/1420 ipsecmb_chacha20poly1305_1420B", g, " ")
    for (i = 1; i <= 4; i += 2) {
      w = med(g[i] ":rate"); c = med("cpu/" g[i] ":rate")
      w = w == "" ? "" : w * 1420 * 8 / 1000; c = c == "" ? "" : c * 1420 * 8 / 1000
      pw = med(g[i + 1] "_gbps"); pc = med(g[i + 1] "_cpu_gbps")
      printf "| %s vs %s (Gbps) | %s | %s | %s | %s | %s | %s | %d/%d |\n", g[i], g[i + 1], f(w, 2), f(c, 2), f(pw, 2), f(pc, 2), ratio(w, pw), ratio(c, pc), nrounds(g[i] ":rate"), nrounds(g[i + 1] "_gbps")
    }
    w = med("esp/encrypt_batch32_chacha20poly1305/1420:rate"); c = med("cpu/esp/encrypt_batch32_chacha20poly1305/1420:rate")
    w = w == "" ? "" : w * 1420 * 8 / 1000; c = c == "" ? "" : c * 1420 * 8 / 1000
    pw = med("openssl_chacha20-poly1305_1420B_elapsed_gbps"); pc = med("openssl_chacha20-poly1305_1420B_gbps")
    printf "| esp/encrypt_batch32_chacha20poly1305/1420 vs OpenSSL (Gbps) | %s | %s | %s | %s | %s | %s | %d/%d |\n", f(w, 2), f(c, 2), f(pw, 2), f(pc, 2), ratio(w, pw), ratio(c, pc), nrounds("esp/encrypt_batch32_chacha20poly1305/1420:rate"), nrounds("openssl_chacha20-poly1305_1420B_gbps")
    print ""
    # Stage work per packet: l3fwd minus its copy baseline, in ns, both sides.
    ow = med("pipeline/l3fwd:ns"); ob = med("pipeline/null_copy_baseline:ns")
    oc = med("cpu/pipeline/l3fwd:ns"); obc = med("cpu/pipeline/null_copy_baseline:ns")
    pw = med("l3fwd_peer_mpps"); pb = med("l3fwd_peer_copy_baseline_mpps")
    pc = med("l3fwd_peer_cpu_mpps"); pbc = med("l3fwd_peer_copy_baseline_cpu_mpps")
    sw = (ow != "" && ob != "") ? (ow - ob) / 32 : ""; sc = (oc != "" && obc != "") ? (oc - obc) / 32 : ""
    tw = (pw > 0 && pb > 0) ? 1000 / pw - 1000 / pb : ""; tc = (pc > 0 && pbc > 0) ? 1000 / pc - 1000 / pbc : ""
    print "l3fwd stage work per packet (l3fwd minus copy baseline; ratio = peer / ours, >= 1.0 means ours is no slower):"
    printf "  wall:          wirespeed %s ns, C peer %s ns, ratio %s\n", f(sw, 2), f(tw, 2), ratio(tw, sw)
    printf "  per CPU-time:  wirespeed %s ns, C peer %s ns, ratio %s\n", f(sc, 2), f(tc, 2), ratio(tc, sc)
    print ""
    # Dispatcher: parse + decision per frame.
    p = med("dispatch/parse_batch32_ipv4_udp:ns"); d = med("dispatch/decide_batch32_ipv4_udp:ns")
    pc = med("cpu/dispatch/parse_batch32_ipv4_udp:ns"); dc = med("cpu/dispatch/decide_batch32_ipv4_udp:ns")
    printf "dispatch/parse_batch32_ipv4_udp per frame: %s ns wall, %s ns CPU (parse alone: %s / %s ns)\n", f(p == "" ? "" : p / 32, 2), f(pc == "" ? "" : pc / 32, 2), f((p == "" || d == "") ? "" : (p - d) / 32, 2), f((pc == "" || dc == "") ? "" : (pc - dc) / 32, 2)
    # Toeplitz vs rte_softrss (TSC cycles, wall clock) at the kernel-reported clock.
    if (mhz > 0) {
      split("ipv4 ipv6", fams, " ")
      for (i = 1; i <= 2; i++) {
        k = fams[i]; s = med("rte_softrss_" k "_4tuple_cycles")
        w = med("toeplitz/" k "_4tuple:rate"); c = med("cpu/toeplitz/" k "_4tuple:rate")
        w = w > 0 ? 1000 / w : ""; c = c > 0 ? 1000 / c : ""; sn = s == "" ? "" : s * 1000 / mhz
        printf "toeplitz/%s_4tuple: %s ns per hash wall, %s ns CPU; rte_softrss %s ns (%s TSC cycles); ratio %s wall, %s CPU\n", k, f(w, 2), f(c, 2), f(sn, 1), f(s, 1), ratio(sn, w), ratio(sn, c)
      }
    }
    for (k in v) if (k ~ /^gateway\/.*:cycles$/) printf "%s (from thread CPU time): %s\n", k, f(med(k), 0)
  }' <<<"$all"
