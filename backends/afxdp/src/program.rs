//! The XDP program, assembled here from eBPF instructions (no clang, no libbpf, no ELF).
//!
//! What it does with each frame on the interface:
//!
//! 1. **Kernel pass** (`XDP_PASS`, the frame goes to the Linux stack as if no program ran) for
//!    the management traffic named in [`KernelPass`]: by default ARP, IPv6 neighbor discovery
//!    (ICMPv6 types 133–137), TCP to destination port 22 (SSH) and IKE, over IPv4/IPv6. So
//!    the box stays reachable by SSH, keeps resolving neighbors and its IKE daemon (strongSwan's
//!    charon, ...) keeps negotiating while the data plane owns the interface. IKE is UDP to
//!    [`KernelPass::ike_ports`] (500), whole, and UDP to [`KernelPass::nat_t_ports`] (4500)
//!    only when the first four payload bytes are zero — the non-ESP marker of RFC 3948 §2.2,
//!    checked inside the UDP length, so padding never counts; ESP-in-UDP (a non-zero SPI there),
//!    NAT keepalives (one byte) and ESP stay in the data plane. With
//!    [`KernelPass::own_addresses`] given, only TCP and UDP to those addresses is passed, so
//!    transit SSH and IKE stay in the data plane; without, the port match takes any
//!    destination. IPv4 fragments other than the first are never matched for TCP (they carry no
//!    ports); UDP fragments are never split between kernel and data plane: every fragment of
//!    UDP (IPv4, or an IPv6 fragment header followed by UDP) to an own address goes to the
//!    kernel, which reassembles a large IKE message, and without own addresses every UDP
//!    fragment goes to the sockets. Up to two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`) are
//!    looked through, and up to two IPv6 extension headers (hop-by-hop, routing, destination
//!    options) before TCP, UDP or ICMPv6; more extension headers end the match (the frame goes
//!    to the sockets).
//! 2. **Everything else** is redirected with `bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)`
//!    to the AF_XDP socket of the queue it arrived on; when that queue has no socket (not
//!    claimed by a shard yet), the fallback action passes it to the kernel rather than dropping.
//!
//! VLAN-tagged frames that are not management traffic go to the sockets with their tags, where
//! the stages classify them.
//!
//! With the RX hash on ([`assemble`]'s `rx_hash`, a device-bound program in driver mode), a
//! prologue first asks the driver for the packet's RSS hash (`bpf_xdp_metadata_rx_hash`
//! kfunc), and a frame redirected to a socket gets 8 bytes in front of it
//! (`bpf_xdp_adjust_head`): the hash, then a status word — [`META_HASH_OK`] in the high half
//! and the hash type in the low half, or [`META_HASH_ERR`] and the kfunc's errno. The Rx queue
//! reads and strips them. (Not XDP metadata through `bpf_xdp_adjust_meta`: some kernels refuse
//! that helper to XDP programs, and a prefix inside the descriptor cannot go stale.) A frame
//! that falls back to the kernel (no socket on its queue) loses the prefix again first; one the
//! driver leaves no headroom for, which XDP's 256 bytes rule out, is dropped (`XDP_DROP`)
//! rather than reach a socket without it.

// The assembler is used by the Linux port only; elsewhere the crate offers `KernelPass` alone.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::net::IpAddr;

use wirespeed_core::rss::{SteeringAction, SteeringPlan};
use wirespeed_core::wire::{IKE_PORT, NAT_T_PORT};

/// Which management traffic the XDP program hands to the kernel stack instead of the sockets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelPass {
    /// ARP (EtherType 0x0806).
    pub arp: bool,
    /// IPv6 neighbor discovery: ICMPv6 types 133–137 (RS, RA, NS, NA, redirect).
    pub ipv6_nd: bool,
    /// TCP destination ports, e.g. `[22]` for SSH. At most 8.
    pub tcp_dst_ports: Vec<u16>,
    /// The box's own addresses: when given, TCP to `tcp_dst_ports` goes to the kernel only when
    /// addressed to one of them (transit SSH stays in the data plane); when empty, to any
    /// address. At most 8. UDP to [`KernelPass::ike_ports`] and [`KernelPass::nat_t_ports`]
    /// is restricted the same way.
    pub own_addresses: Vec<IpAddr>,
    /// UDP destination ports passed whole: IKE's `[500]` by default. At most 4.
    pub ike_ports: Vec<u16>,
    /// UDP destination ports passed only when the first four payload bytes are zero (RFC 3948
    /// non-ESP marker: IKE after NAT detection), `[4500]` by default; ESP-in-UDP to them (a
    /// non-zero SPI) and NAT keepalives stay in the data plane. At most 4.
    pub nat_t_ports: Vec<u16>,
}

impl Default for KernelPass {
    fn default() -> Self {
        Self {
            arp: true,
            ipv6_nd: true,
            tcp_dst_ports: vec![22],
            own_addresses: Vec::new(),
            ike_ports: vec![IKE_PORT],
            nat_t_ports: vec![NAT_T_PORT],
        }
    }
}

/// Most own addresses the program compares against.
pub const MAX_OWN_ADDRESSES: usize = 8;

/// Most TCP ports the program compares against (each costs two instructions per TCP frame).
pub const MAX_TCP_PORTS: usize = 8;

/// Most ports in each of [`KernelPass::ike_ports`] and [`KernelPass::nat_t_ports`].
pub const MAX_UDP_PORTS: usize = 4;

impl KernelPass {
    /// Nothing to the kernel: every frame goes to the sockets.
    pub fn none() -> Self {
        Self {
            arp: false,
            ipv6_nd: false,
            tcp_dst_ports: Vec::new(),
            own_addresses: Vec::new(),
            ike_ports: Vec::new(),
            nat_t_ports: Vec::new(),
        }
    }

    /// The management rules of a steering plan that the program can express: rules sending to
    /// `mgmt_queue` that match ARP, IPv6 ND, one TCP destination port, one UDP destination port
    /// (IKE), or one UDP destination port with the non-ESP marker (IKE over NAT-T) — each
    /// optionally to one host address. Returns the pass set and the names of the rules it covers
    /// (the others stay with the software path). The program matches ports × addresses, so
    /// covering `ssh@A` and `bgp@B` also passes SSH to B.
    pub fn from_plan(plan: &SteeringPlan, mgmt_queue: u16) -> (Self, Vec<String>) {
        use wirespeed_core::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6};
        let mut pass = Self::none();
        let mut covered = Vec::new();
        let mut any_address = false;
        for r in &plan.rules {
            if r.action != SteeringAction::Queue(mgmt_queue) {
                continue;
            }
            let m = &r.matches;
            let only = |m2: &wirespeed_core::rss::Match| m2 == m;
            let arp = wirespeed_core::rss::Match { ethertype: Some(ETHERTYPE_ARP), ..Default::default() };
            if only(&arp) {
                pass.arp = true;
                covered.push(r.name.clone());
                continue;
            }
            if m.ethertype == Some(ETHERTYPE_IPV6)
                && m.ip_proto == Some(58)
                && m.icmp_type.is_some_and(|t| (133..=137).contains(&t.lo) && (133..=137).contains(&t.hi))
                && m.src.is_none()
                && m.dst.is_none()
            {
                pass.ipv6_nd = true;
                covered.push(r.name.clone());
                continue;
            }
            // One transport destination port (optionally to one host): TCP, UDP, or UDP behind
            // the non-ESP marker.
            let port_only = wirespeed_core::rss::Match {
                ip_proto: m.ip_proto,
                dst_port: m.dst_port,
                ethertype: m.ethertype,
                dst: m.dst,
                non_esp_marker: m.non_esp_marker,
                ..Default::default()
            };
            let host = m.dst.filter(|d| d.len == if d.addr.is_ipv4() { 32 } else { 128 });
            let (list, most) = match (m.ip_proto, m.non_esp_marker) {
                (Some(6), None) => (&mut pass.tcp_dst_ports, MAX_TCP_PORTS),
                (Some(17), None) => (&mut pass.ike_ports, MAX_UDP_PORTS),
                (Some(17), Some(true)) => (&mut pass.nat_t_ports, MAX_UDP_PORTS),
                _ => continue,
            };
            if only(&port_only)
                && (m.dst.is_none() || host.is_some())
                && let Some(p) = m.dst_port.filter(|p| p.lo == p.hi)
                && (list.contains(&p.lo) || list.len() < most)
            {
                if !list.contains(&p.lo) {
                    list.push(p.lo);
                }
                match host {
                    Some(h) if !pass.own_addresses.contains(&h.addr) => pass.own_addresses.push(h.addr),
                    Some(_) => {}
                    None => any_address = true,
                }
                covered.push(r.name.clone());
            }
        }
        if any_address || pass.own_addresses.len() > MAX_OWN_ADDRESSES {
            // One rule for any address makes the port match address-free for all (a superset).
            pass.own_addresses.clear();
        }
        (pass, covered)
    }
}

/// One eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn encode(self) -> u64 {
        let regs = (self.src << 4) | (self.dst & 0x0f);
        let b = [
            self.code,
            regs,
            self.off.to_le_bytes()[0],
            self.off.to_le_bytes()[1],
            self.imm.to_le_bytes()[0],
            self.imm.to_le_bytes()[1],
            self.imm.to_le_bytes()[2],
            self.imm.to_le_bytes()[3],
        ];
        // The kernel reads `struct bpf_insn` in host byte order with the register nibbles in
        // the order of the C bitfield (dst low on little-endian).
        if cfg!(target_endian = "big") {
            let regs = (self.dst << 4) | (self.src & 0x0f);
            let mut b = b;
            b[1] = regs;
            b[2..4].copy_from_slice(&self.off.to_be_bytes());
            b[4..8].copy_from_slice(&self.imm.to_be_bytes());
            return u64::from_ne_bytes(b);
        }
        u64::from_ne_bytes(b)
    }
}

// Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const ADD64_X: u8 = 0x0f;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const JLT_K: u8 = 0xa5;
const JGT_K: u8 = 0x25;
const JSET_K: u8 = 0x45;
/// 32-bit compares (`BPF_JMP32`): an address word compared as a sign-extended 64-bit immediate
/// would never match a zero-extended load with its top bit set.
const JEQ32_K: u8 = 0x16;
const JNE32_K: u8 = 0x56;
const JA: u8 = 0x05;
const STX_W: u8 = 0x63;
const ST_DW: u8 = 0x7a;
const OR64_K: u8 = 0x47;
const SUB64_X: u8 = 0x1f;
/// `BPF_PSEUDO_KFUNC_CALL`: the call's immediate is a kernel function's BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;
const HELPER_XDP_ADJUST_HEAD: i32 = 44;
const STX_DW: u8 = 0x7b;
const LDX_DW: u8 = 0x79;
/// `XDP_DROP`.
const XDP_DROP: i32 = 1;
/// XDP metadata status word: the high half when the driver gave a hash (low half: its
/// `xdp_rss_hash_type`).
pub(crate) const META_HASH_OK: u32 = 0x5753_0000;
/// XDP metadata status word: the high half when the driver refused (low half: the errno).
pub(crate) const META_HASH_ERR: u32 = 0x5745_0000;
/// Bytes the RX-hash program puts in front of a frame redirected to a socket.
pub(crate) const META_LEN: usize = 8;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS`.
pub(crate) const XDP_PASS: i32 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Pass,
    Redirect,
    Ipv6,
    Ipv6Tcp,
    Dst4,
    Dst6,
    /// Compare the IPv6 destination with own address `i`.
    Cand6(usize),
    /// Step over VLAN tag `i`.
    Vlan(usize),
    /// Past VLAN tag `i` (or its absence).
    VlanDone(usize),
    /// Step over IPv6 extension header `i`.
    Ext(usize),
    /// Past extension header `i` (or its absence).
    ExtDone(usize),
    /// IPv4, not a fragment of UDP (to an own address).
    V4NotUdpFrag,
    /// IPv4 UDP.
    V4Udp,
    /// IPv4 UDP to a NAT-T port: check the non-ESP marker.
    Marker4,
    /// IPv6 UDP (or a fragment header).
    Ipv6Udp,
    /// IPv6, no fragment header.
    V6NotFrag,
    /// IPv6 UDP to a NAT-T port: check the non-ESP marker.
    Marker6,
    /// The RX-hash kfunc failed.
    HashErr,
    /// The RX-hash prefix is written.
    HashDone,
    /// Drop the frame (no room for the RX-hash prefix).
    Drop,
    /// Return what `bpf_redirect_map` returned.
    Exit,
}

/// VLAN tags the program looks through (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers the program steps over before TCP or ICMPv6.
const MAX_IPV6_EXT: usize = 2;

/// A tiny assembler: instructions plus jumps to labels resolved at the end.
struct Asm {
    insns: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn { code, dst, src, off, imm });
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    fn finish(mut self) -> Vec<u64> {
        for (at, l) in &self.fixups {
            let target = self.labels.iter().find(|(x, _)| x == l).map(|(_, i)| *i);
            let target = target.unwrap_or_else(|| unreachable!("label {l:?} placed by `assemble`"));
            self.insns[*at].off = (target as i64 - *at as i64 - 1) as i16;
        }
        self.insns.into_iter().map(Insn::encode).collect()
    }
}

/// Network-order 16-bit constant as the program loads it (a `u16` load is host-order).
fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// Assembles the program for an XSKMAP whose fd is `map_fd`; with `rx_hash` (the BTF id of
/// `bpf_xdp_metadata_rx_hash`), the RX-hash prologue too (module docs).
pub(crate) fn assemble(pass: &KernelPass, map_fd: i32, rx_hash: Option<u32>) -> Vec<u64> {
    // Registers: r6 = ctx, r2 = data (stepped over VLAN tags), r3 = data_end, r4/r5/r7/r8/r9
    // scratch (r9: the IPv6 upper-layer header). The RX-hash results live on the stack.
    let mut a = Asm { insns: Vec::new(), fixups: Vec::new(), labels: Vec::new() };
    let tcp = !pass.tcp_dst_ports.is_empty();
    let udp = !pass.ike_ports.is_empty() || !pass.nat_t_ports.is_empty();
    let any_pass = pass.arp || pass.ipv6_nd || tcp || udp;
    let own4: Vec<std::net::Ipv4Addr> = pass
        .own_addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        })
        .collect();
    let any_address = pass.own_addresses.is_empty();
    let own6: Vec<std::net::Ipv6Addr> = pass
        .own_addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        })
        .collect();
    // Where a port match goes: straight to the kernel, or to the destination check first.
    let (hit4, hit6) = if any_address { (Label::Pass, Label::Pass) } else { (Label::Dst4, Label::Dst6) };
    a.op(MOV64_X, 6, 1, 0, 0);
    if let Some(id) = rx_hash {
        rx_hash_prologue(&mut a, id);
    }
    if any_pass {
        a.op(LDX_W, 2, 6, 0, 0); // data
        a.op(LDX_W, 3, 6, 4, 0); // data_end
        a.op(MOV64_X, 4, 2, 0, 0);
        a.op(ADD64_K, 4, 0, 0, 14);
        a.jmp(JGT_X, 4, 3, 0, Label::Redirect); // shorter than an Ethernet header
        a.op(LDX_H, 5, 2, 12, 0); // EtherType
        // VLAN tags: step the base pointer r2 over each, so every offset below stays the same.
        for i in 0..MAX_VLAN_TAGS {
            let tag = Label::Vlan(i);
            a.jmp(JEQ_K, 5, 0, be16(0x8100), tag);
            a.jmp(JEQ_K, 5, 0, be16(0x88a8), tag);
            a.jmp(JA, 0, 0, 0, Label::VlanDone(i));
            a.label(tag);
            a.op(MOV64_X, 4, 2, 0, 0);
            a.op(ADD64_K, 4, 0, 0, 18);
            a.jmp(JGT_X, 4, 3, 0, Label::Redirect);
            a.op(LDX_H, 5, 2, 16, 0); // the EtherType after the tag
            a.op(ADD64_K, 2, 0, 0, 4);
            a.label(Label::VlanDone(i));
        }
        if pass.arp {
            a.jmp(JEQ_K, 5, 0, be16(0x0806), Label::Pass);
        }
        a.jmp(JEQ_K, 5, 0, be16(0x86dd), Label::Ipv6);
        if tcp || udp {
            // IPv4: need the 20-byte base header.
            a.jmp(JNE_K, 5, 0, be16(0x0800), Label::Redirect);
            a.op(MOV64_X, 4, 2, 0, 0);
            a.op(ADD64_K, 4, 0, 0, 34);
            a.jmp(JGT_X, 4, 3, 0, Label::Redirect);
            a.op(LDX_B, 7, 2, 23, 0); // protocol
            a.op(LDX_H, 5, 2, 20, 0); // flags + fragment offset
            if udp && !own4.is_empty() {
                // Any fragment of UDP to an own address: the kernel reassembles it (a large IKE
                // message); the destination check decides.
                a.jmp(JNE_K, 7, 0, 17, Label::V4NotUdpFrag);
                a.jmp(JSET_K, 5, 0, be16(0x3fff), Label::Dst4);
                a.label(Label::V4NotUdpFrag);
            }
            a.jmp(JSET_K, 5, 0, be16(0x1fff), Label::Redirect); // a later fragment: no ports
            a.op(LDX_B, 5, 2, 14, 0); // version + IHL
            a.op(AND64_K, 5, 0, 0, 0x0f);
            a.op(LSH64_K, 5, 0, 0, 2);
            a.jmp(JLT_K, 5, 0, 20, Label::Redirect); // malformed: the stages count it
            a.op(MOV64_X, 4, 2, 0, 0);
            a.op(ADD64_X, 4, 5, 0, 0); // r4 = data + IHL (the transport header is at r4 + 14)
            if tcp {
                a.jmp(JNE_K, 7, 0, 6, if udp { Label::V4Udp } else { Label::Redirect });
                a.op(MOV64_X, 8, 4, 0, 0);
                a.op(ADD64_K, 8, 0, 0, 18); // through the TCP ports
                a.jmp(JGT_X, 8, 3, 0, Label::Redirect);
                a.op(LDX_H, 5, 4, 16, 0); // TCP destination port
                for p in &pass.tcp_dst_ports {
                    a.jmp(JEQ_K, 5, 0, be16(*p), hit4);
                }
                a.jmp(JA, 0, 0, 0, Label::Redirect);
            }
            if udp {
                a.label(Label::V4Udp);
                a.jmp(JNE_K, 7, 0, 17, Label::Redirect);
                // The first fragment of UDP not to an own address: its followers carry no ports,
                // so the whole datagram stays in the data plane.
                a.op(LDX_H, 5, 2, 20, 0);
                a.jmp(JSET_K, 5, 0, be16(0x3fff), Label::Redirect);
                a.op(MOV64_X, 8, 4, 0, 0);
                a.op(ADD64_K, 8, 0, 0, 22); // through the UDP header
                a.jmp(JGT_X, 8, 3, 0, Label::Redirect);
                udp_ports(&mut a, pass, 4, 14, hit4, Label::Marker4);
            }
            // (Every block above ends in a jump: the verifier rejects unreachable instructions.)
            if !any_address {
                a.label(Label::Dst4);
                a.op(LDX_W, 5, 2, 30, 0); // IPv4 destination (inside the 34 bytes checked)
                for addr in &own4 {
                    a.jmp(JEQ32_K, 5, 0, i32::from_ne_bytes(addr.octets()), Label::Pass);
                }
                a.jmp(JA, 0, 0, 0, Label::Redirect);
            }
        } else {
            a.jmp(JA, 0, 0, 0, Label::Redirect);
        }
        a.label(Label::Ipv6);
        if pass.ipv6_nd || tcp || udp {
            a.op(MOV64_X, 4, 2, 0, 0);
            a.op(ADD64_K, 4, 0, 0, 58); // Ethernet + IPv6 + 4 bytes of L4
            a.jmp(JGT_X, 4, 3, 0, Label::Redirect);
            a.op(LDX_B, 5, 2, 20, 0); // next header
            // r9 = the upper-layer header: past the fixed header and any extension headers.
            a.op(MOV64_X, 9, 2, 0, 0);
            a.op(ADD64_K, 9, 0, 0, 54);
            for i in 0..MAX_IPV6_EXT {
                for hop in [0, 43, 60] {
                    // hop-by-hop, routing, destination options
                    a.jmp(JEQ_K, 5, 0, hop, Label::Ext(i));
                }
                a.jmp(JA, 0, 0, 0, Label::ExtDone(i));
                a.label(Label::Ext(i));
                a.op(MOV64_X, 4, 9, 0, 0);
                a.op(ADD64_K, 4, 0, 0, 8); // an extension header is at least 8 bytes
                a.jmp(JGT_X, 4, 3, 0, Label::Redirect);
                a.op(LDX_B, 5, 9, 0, 0); // its next header
                a.op(LDX_B, 8, 9, 1, 0); // its length, in 8 bytes beyond the first 8
                a.op(ADD64_K, 8, 0, 0, 1);
                a.op(LSH64_K, 8, 0, 0, 3);
                a.op(ADD64_X, 9, 8, 0, 0);
                a.label(Label::ExtDone(i));
            }
            a.op(MOV64_X, 4, 9, 0, 0);
            a.op(ADD64_K, 4, 0, 0, 4); // the ICMPv6 type, or the ports
            a.jmp(JGT_X, 4, 3, 0, Label::Redirect);
            if pass.ipv6_nd {
                a.op(LDX_B, 7, 9, 0, 0); // ICMPv6 type
                a.jmp(JNE_K, 5, 0, 58, Label::Ipv6Tcp);
                a.jmp(JLT_K, 7, 0, 133, Label::Redirect);
                a.jmp(JGT_K, 7, 0, 137, Label::Redirect);
                a.jmp(JA, 0, 0, 0, Label::Pass);
            }
            a.label(Label::Ipv6Tcp);
            if tcp {
                a.jmp(JNE_K, 5, 0, 6, if udp { Label::Ipv6Udp } else { Label::Redirect });
                a.op(LDX_H, 7, 9, 2, 0); // TCP destination port
                for p in &pass.tcp_dst_ports {
                    a.jmp(JEQ_K, 7, 0, be16(*p), hit6);
                }
                a.jmp(JA, 0, 0, 0, Label::Redirect);
            }
            if udp {
                a.label(Label::Ipv6Udp);
                if !own6.is_empty() {
                    // A fragment header followed by UDP, to an own address: the kernel's.
                    a.jmp(JNE_K, 5, 0, 44, Label::V6NotFrag);
                    a.op(LDX_B, 7, 9, 0, 0); // the fragment header's next header
                    a.jmp(JEQ_K, 7, 0, 17, Label::Dst6);
                    a.jmp(JA, 0, 0, 0, Label::Redirect);
                    a.label(Label::V6NotFrag);
                }
                a.jmp(JNE_K, 5, 0, 17, Label::Redirect);
                a.op(MOV64_X, 8, 9, 0, 0);
                a.op(ADD64_K, 8, 0, 0, 8); // through the UDP header
                a.jmp(JGT_X, 8, 3, 0, Label::Redirect);
                udp_ports(&mut a, pass, 9, 0, hit6, Label::Marker6);
            }
            if !any_address && (tcp || udp) {
                a.label(Label::Dst6);
                // IPv6 destination: four words at 38..54 (inside the 58 bytes checked).
                for (i, addr) in own6.iter().enumerate() {
                    a.label(Label::Cand6(i));
                    let next = if i + 1 < own6.len() { Label::Cand6(i + 1) } else { Label::Redirect };
                    for (w, chunk) in addr.octets().chunks(4).enumerate() {
                        a.op(LDX_W, 7, 2, 38 + 4 * w as i16, 0);
                        let word = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                        a.jmp(JNE32_K, 7, 0, word, next);
                    }
                    a.jmp(JA, 0, 0, 0, Label::Pass);
                }
            }
        }
    }
    a.label(Label::Redirect);
    if rx_hash.is_some() {
        rx_hash_prefix(&mut a);
    }
    a.op(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd);
    a.op(0, 0, 0, 0, 0);
    a.op(LDX_W, 2, 6, 16, 0); // rx_queue_index
    a.op(MOV64_K, 3, 0, 0, XDP_PASS); // fallback action when the slot is empty
    a.op(CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    if rx_hash.is_some() {
        // Falling back to the kernel: take the prefix off again.
        a.jmp(JNE_K, 0, 0, XDP_PASS, Label::Exit);
        a.op(MOV64_X, 1, 6, 0, 0);
        a.op(MOV64_K, 2, 0, 0, META_LEN as i32);
        a.op(CALL, 0, 0, 0, HELPER_XDP_ADJUST_HEAD);
        a.op(MOV64_K, 0, 0, 0, XDP_PASS);
        a.label(Label::Exit);
    }
    a.op(EXIT, 0, 0, 0, 0);
    if rx_hash.is_some() {
        a.label(Label::Drop);
        a.op(MOV64_K, 0, 0, 0, XDP_DROP);
        a.op(EXIT, 0, 0, 0, 0);
    }
    if any_pass {
        // (The verifier rejects unreachable instructions, so the tail exists only when used.)
        a.label(Label::Pass);
        a.op(MOV64_K, 0, 0, 0, XDP_PASS);
        a.op(EXIT, 0, 0, 0, 0);
    }
    a.finish()
}

/// The UDP port match, for a UDP header at `reg + off` whose eight bytes the caller checked are
/// in the frame: a port of [`KernelPass::ike_ports`] goes to `hit`; one of
/// [`KernelPass::nat_t_ports`] to `hit` only behind the non-ESP marker (a UDP length of at
/// least 12, the four bytes in the frame, all zero); anything else is redirected to the sockets.
fn udp_ports(a: &mut Asm, pass: &KernelPass, reg: u8, off: i16, hit: Label, marker: Label) {
    a.op(LDX_H, 5, reg, off + 2, 0); // UDP destination port
    for p in &pass.ike_ports {
        a.jmp(JEQ_K, 5, 0, be16(*p), hit);
    }
    for p in &pass.nat_t_ports {
        a.jmp(JEQ_K, 5, 0, be16(*p), marker);
    }
    a.jmp(JA, 0, 0, 0, Label::Redirect);
    if !pass.nat_t_ports.is_empty() {
        a.label(marker);
        a.op(MOV64_X, 8, reg, 0, 0);
        a.op(ADD64_K, 8, 0, 0, i32::from(off) + 12); // through the first payload word
        a.jmp(JGT_X, 8, 3, 0, Label::Redirect);
        // The UDP length, big-endian, byte by byte: the marker must be inside the datagram (a
        // 1-byte NAT keepalive padded to the Ethernet minimum must not look like one).
        a.op(LDX_B, 7, reg, off + 4, 0);
        a.op(LSH64_K, 7, 0, 0, 8);
        a.op(LDX_B, 8, reg, off + 5, 0);
        a.op(ADD64_X, 7, 8, 0, 0);
        a.jmp(JLT_K, 7, 0, 12, Label::Redirect);
        a.op(LDX_W, 7, reg, off + 8, 0);
        a.jmp(JNE32_K, 7, 0, 0, Label::Redirect); // an SPI: ESP-in-UDP, the data plane's
        a.jmp(JA, 0, 0, 0, hit);
    }
}

/// Asks the driver for the RSS hash: the hash and type at fp-8/fp-4, the kfunc's result at
/// fp-16 (the stack outlives every helper call; registers r1-r5 do not, and r7-r9 are the
/// parser's). Expects the context in r6.
fn rx_hash_prologue(a: &mut Asm, btf_id: u32) {
    a.op(ST_DW, 10, 0, -8, 0); // hash and type slots, zeroed
    a.op(MOV64_X, 1, 6, 0, 0);
    a.op(MOV64_X, 2, 10, 0, 0);
    a.op(ADD64_K, 2, 0, 0, -8); // u32 *hash
    a.op(MOV64_X, 3, 10, 0, 0);
    a.op(ADD64_K, 3, 0, 0, -4); // enum xdp_rss_hash_type *type
    a.op(CALL, 0, PSEUDO_KFUNC_CALL, 0, btf_id as i32);
    a.op(STX_DW, 10, 0, -16, 0);
}

/// Puts the 8-byte prefix (hash, status word) in front of the frame (module docs).
fn rx_hash_prefix(a: &mut Asm) {
    a.op(MOV64_X, 1, 6, 0, 0);
    a.op(MOV64_K, 2, 0, 0, -(META_LEN as i32));
    a.op(CALL, 0, 0, 0, HELPER_XDP_ADJUST_HEAD);
    a.jmp(JNE_K, 0, 0, 0, Label::Drop);
    a.op(LDX_W, 2, 6, 0, 0); // data
    a.op(LDX_W, 3, 6, 4, 0); // data_end
    a.op(MOV64_X, 4, 2, 0, 0);
    a.op(ADD64_K, 4, 0, 0, META_LEN as i32);
    a.jmp(JGT_X, 4, 3, 0, Label::Drop);
    a.op(LDX_W, 4, 10, -8, 0);
    a.op(STX_W, 2, 4, 0, 0); // prefix[0..4] = hash
    a.op(LDX_DW, 0, 10, -16, 0);
    a.jmp(JNE_K, 0, 0, 0, Label::HashErr);
    a.op(LDX_W, 4, 10, -4, 0);
    a.op(AND64_K, 4, 0, 0, 0xffff);
    a.op(OR64_K, 4, 0, 0, META_HASH_OK as i32);
    a.op(STX_W, 2, 4, 4, 0); // prefix[4..8] = OK | type
    a.jmp(JA, 0, 0, 0, Label::HashDone);
    a.label(Label::HashErr);
    a.op(MOV64_K, 4, 0, 0, 0);
    a.op(SUB64_X, 4, 0, 0, 0); // -errno
    a.op(AND64_K, 4, 0, 0, 0xffff);
    a.op(OR64_K, 4, 0, 0, META_HASH_ERR as i32);
    a.op(STX_W, 2, 4, 4, 0); // prefix[4..8] = ERR | errno
    a.label(Label::HashDone);
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirespeed_core::rss::RssGroup;

    #[test]
    fn plan_management_rules_become_kernel_pass() {
        let plan = SteeringPlan::management_default(0, RssGroup::first(4), &[]);
        let (pass, covered) = KernelPass::from_plan(&plan, 0);
        assert!(pass.arp && pass.ipv6_nd);
        assert_eq!(pass.tcp_dst_ports, vec![22, 179]);
        assert_eq!((pass.ike_ports.as_slice(), pass.nat_t_ports.as_slice()), (&[500][..], &[4500][..]));
        assert_eq!(covered, vec!["arp", "ipv6-nd", "ike", "ike-natt", "ssh", "bgp"]);
        assert!(pass.own_addresses.is_empty(), "the plan's rules match any address");
        assert_eq!(pass, KernelPass { tcp_dst_ports: vec![22, 179], ..KernelPass::default() });
        // Rules bound to the box's addresses restrict the TCP pass to those addresses.
        let own: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let plan = SteeringPlan::management_default(0, RssGroup::first(4), &own);
        let (pass, covered) = KernelPass::from_plan(&plan, 0);
        assert_eq!(pass.tcp_dst_ports, vec![22, 179]);
        assert_eq!(pass.own_addresses, own.to_vec());
        assert_eq!((pass.ike_ports.as_slice(), pass.nat_t_ports.as_slice()), (&[500][..], &[4500][..]));
        let want = [
            "arp",
            "ipv6-nd",
            "ike@192.0.2.1",
            "ike-natt@192.0.2.1",
            "ssh@192.0.2.1",
            "bgp@192.0.2.1",
            "ike@2001:db8::1",
            "ike-natt@2001:db8::1",
            "ssh@2001:db8::1",
            "bgp@2001:db8::1",
        ];
        assert_eq!(covered, want);
    }

    /// What the plan cannot say to the program stays with the software path: the marker on a
    /// port other than the plan's own rule, a source-port match, a port range, a second marker
    /// polarity, and more ports than the program holds.
    #[test]
    fn plan_rules_beyond_the_program_are_not_covered() {
        use wirespeed_core::rss::{Match, PortRange, SteeringRule};
        let rule = |name: &str, matches: Match| SteeringRule {
            name: name.into(),
            matches,
            action: SteeringAction::Queue(0),
        };
        let udp = |port: u16| Match {
            ip_proto: Some(17),
            dst_port: Some(PortRange::one(port)),
            ..Match::default()
        };
        let mut rules = vec![
            rule("ike-alt", udp(1500)),
            rule("natt-alt", Match { non_esp_marker: Some(true), ..udp(14500) }),
            rule("esp-in-udp", Match { non_esp_marker: Some(false), ..udp(4500) }),
            rule(
                "sport",
                Match { src_port: Some(PortRange::one(500)), ip_proto: Some(17), ..Match::default() },
            ),
            rule("range", Match { dst_port: Some(PortRange { lo: 500, hi: 501 }), ..udp(0) }),
            rule("spi", Match { spi: Some(7), ..udp(4500) }),
        ];
        for p in 0..5u16 {
            rules.push(rule(&format!("many{p}"), udp(600 + p)));
        }
        let plan = SteeringPlan { rules, default: RssGroup::first(2) };
        let (pass, covered) = KernelPass::from_plan(&plan, 0);
        assert_eq!(pass.ike_ports, vec![1500, 600, 601, 602]);
        assert_eq!(pass.nat_t_ports, vec![14500]);
        assert_eq!(covered, vec!["ike-alt", "natt-alt", "many0", "many1", "many2"]);
        assert!(!pass.arp && !pass.ipv6_nd && pass.tcp_dst_ports.is_empty());
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn program_shape() {
        // Redirect only: ctx save, map load (two slots), queue index, fallback, call, exit.
        let p = assemble(&KernelPass::none(), 7, None);
        assert_eq!(p.len(), 7);
        let first = p[1].to_ne_bytes();
        assert_eq!((first[0], first[1]), (LD_IMM64, (PSEUDO_MAP_FD << 4) | 1), "map fd load into r1");
        assert_eq!(i32::from_ne_bytes(first[4..8].try_into().unwrap()), 7);
        // Every jump of the full programs lands inside them.
        let with_own = KernelPass {
            own_addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            ..KernelPass::default()
        };
        let udp_only = KernelPass { ike_ports: vec![500], nat_t_ports: vec![4500], ..KernelPass::none() };
        let udp_own6 = KernelPass { own_addresses: vec!["2001:db8::1".parse().unwrap()], ..udp_only.clone() };
        let mut fulls: Vec<Vec<u64>> =
            [&KernelPass::default(), &with_own, &udp_only, &udp_own6].map(|p| assemble(p, 3, None)).into();
        fulls.push(assemble(&with_own, 3, Some(1234)));
        fulls.push(assemble(&udp_own6, 3, Some(1234)));
        for full in fulls {
            for (i, w) in full.iter().enumerate() {
                let b = w.to_ne_bytes();
                if matches!(b[0] & 0x07, 0x05 | 0x06) && b[0] != CALL && b[0] != EXIT {
                    let off = i16::from_ne_bytes([b[2], b[3]]) as i64;
                    let to = i as i64 + 1 + off;
                    assert!((0..full.len() as i64).contains(&to), "jump at {i} to {to}");
                }
            }
        }
    }
}
