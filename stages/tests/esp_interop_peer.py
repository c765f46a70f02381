#!/usr/bin/python3
"""Independent ESP peer for wirespeed's interoperability test (tests/esp_interop.rs).

Reads one JSON request per line on stdin and answers one JSON line on stdout. It uses scapy's
ESP implementation (scapy.layers.ipsec, on top of the `cryptography` package), which supports
AES-GCM (RFC 4106) and ChaCha20-Poly1305 (RFC 7634) in scapy 2.5, tunnel mode over IPv4 and
IPv6, and RFC 3948 UDP encapsulation.

Request: {"op": "encrypt" | "decrypt", "alg": "AES-GCM" | "CHACHA20-POLY1305",
          "keymat": hex (key || 4-byte salt), "spi": int, "seq": int,
          "src": outer source, "dst": outer destination, "natt": bool, "pkt": hex}
  encrypt: pkt is the inner IP packet; answers {"ok": hex of the outer packet}
  decrypt: pkt is the outer packet;     answers {"ok": hex of the inner IP packet}
Errors answer {"err": "..."}.
"""
import json
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.packet import Raw, raw


def outer(addr):
    return IPv6 if ":" in addr else IP


def parse_ip(b):
    return IPv6(b) if b[0] >> 4 == 6 else IP(b)


def sa_for(req):
    tunnel = outer(req["src"])(src=req["src"], dst=req["dst"])
    natt = UDP(sport=4500, dport=4500) if req["natt"] else None
    return SecurityAssociation(
        ESP,
        spi=req["spi"],
        seq_num=req["seq"],
        crypt_algo=req["alg"],
        crypt_key=bytes.fromhex(req["keymat"]),
        auth_algo=None,
        tunnel_header=tunnel,
        nat_t_header=natt,
    )


def handle(req):
    sa = sa_for(req)
    pkt = bytes.fromhex(req["pkt"])
    if req["op"] == "encrypt":
        return raw(sa.encrypt(parse_ip(pkt))).hex()
    if req["op"] == "decrypt":
        p = parse_ip(pkt)
        if req["natt"]:
            # scapy dissects UDP/4500 as a NON_ESP marker layer; rebuild it as UDP / ESP so the
            # SA sees the ESP header right after UDP (RFC 3948 §2.2).
            udp = p[UDP]
            esp_bytes = raw(udp.payload)
            udp.remove_payload()
            p = p / ESP(esp_bytes)
        return raw(sa.decrypt(p)).hex()
    raise ValueError("unknown op %r" % req["op"])


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = {"ok": handle(json.loads(line))}
        except Exception as e:  # report, keep serving
            out = {"err": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
