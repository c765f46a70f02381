//! ESP encapsulation and decapsulation in place in a [`PacketBuf`].
//!
//! Layout (tunnel mode, with optional RFC 3948 UDP header):
//!
//! ```text
//! before:  [L2][inner IP packet.........]
//! after:   [L2][outer IP][UDP][SPI|seq|IV][inner IP packet.........|pad|padlen|nh][ICV]
//!               ^ headroom (prepend)       ^ encrypted in place ^   ^ tailroom (set_len)
//! ```
//!
//! Only the L2 header (and, in transport mode, the IP header) moves; the payload is encrypted
//! where it lies. Decapsulation is the mirror image: verify and decrypt in place, move the L2
//! header forward onto the inner packet and trim.
//!
//! Every error is a [`DropReason`]; nothing here panics on hostile input (lengths are checked
//! once, indices after that are within the checked range — see the proptest in
//! `tests/esp_roundtrip.rs`).

use std::time::Instant;

use wirespeed_core::meta::flags;
use wirespeed_core::{DropReason, FlowClass, L3Kind, PacketBuf};

use super::aead::{ICV_LEN, IV_LEN, NONCE_LEN, SALT_LEN};
use super::replay::ReplayError;
use super::sa::{EspMode, SaEventKind, SaState, SecurityAssociation};
use super::wire::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, IpHeader, PROTO_ESP, PROTO_IPV4, PROTO_IPV6, PROTO_NONE, PROTO_UDP,
    set_ipv4_checksum, udp6_checksum,
};

/// ESP header: SPI and sequence number.
pub const ESP_HDR_LEN: usize = 8;
/// UDP header of RFC 3948 encapsulation.
pub const UDP_HDR_LEN: usize = 8;
/// Smallest ESP packet body: header, IV, one aligned block holding the 2-byte trailer, ICV.
pub const MIN_ESP_LEN: usize = ESP_HDR_LEN + IV_LEN + 4 + ICV_LEN;

/// Where an inbound ESP packet's header lies, found by [`locate_esp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspLocation {
    /// The outer IP header.
    pub outer: IpHeader,
    /// Offset of the ESP header from the start of the packet data.
    pub esp_offset: usize,
    /// End of the outer IP packet (Ethernet padding beyond is ignored).
    pub end: usize,
    /// Carried in UDP (RFC 3948).
    pub udp: bool,
    /// SPI.
    pub spi: u32,
    /// Low 32 bits of the sequence number, as sent.
    pub seq_lo: u32,
}

/// Finds ESP in the IP packet at `l3`: IP protocol 50, or UDP to `nat_t_port` whose payload does
/// not start with the four-zero-byte non-ESP marker (IKE) and is not a one-byte `0xff`
/// keepalive. `Ok(None)` means "not ESP, pass through".
#[inline]
pub fn locate_esp(data: &[u8], l3: usize, nat_t_port: u16) -> Result<Option<EspLocation>, DropReason> {
    locate_with(data, l3, nat_t_port, |ip, esp_offset, end, udp, spi, seq_lo| EspLocation {
        outer: *ip,
        esp_offset,
        end,
        udp,
        spi,
        seq_lo,
    })
}

/// What the decrypt stage needs of an inbound ESP packet's location: [`EspLocation`] without
/// the whole outer header. The stage reads these fields one by one from the parsed header
/// instead of copying the `IpHeader` (a copy that was lowered to loads straddling the
/// narrower stores that had just written it: a store-forwarding stall on every packet).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InboundEsp {
    pub esp_offset: usize,
    pub end: usize,
    pub spi: u32,
    pub seq_lo: u32,
    /// The outer header's TOS / traffic class.
    pub tos: u8,
    /// The outer header is IPv6.
    pub v6: bool,
    /// Carried in UDP (RFC 3948).
    pub udp: bool,
    /// Outer source address, left-aligned.
    pub src: u128,
    /// Outer destination address, left-aligned.
    pub dst: u128,
}

impl From<&EspLocation> for InboundEsp {
    fn from(l: &EspLocation) -> Self {
        Self {
            esp_offset: l.esp_offset,
            end: l.end,
            spi: l.spi,
            seq_lo: l.seq_lo,
            tos: l.outer.tos,
            v6: l.outer.v6,
            udp: l.udp,
            src: l.outer.src,
            dst: l.outer.dst,
        }
    }
}

/// [`locate_esp`] for the decrypt stage's per-packet path: always inlined, and the result is
/// an [`InboundEsp`] built field by field.
#[inline(always)]
pub(crate) fn locate_esp_inline(
    data: &[u8],
    l3: usize,
    nat_t_port: u16,
) -> Result<Option<InboundEsp>, DropReason> {
    locate_with(data, l3, nat_t_port, |ip, esp_offset, end, udp, spi, seq_lo| InboundEsp {
        esp_offset,
        end,
        spi,
        seq_lo,
        tos: ip.tos,
        v6: ip.v6,
        udp,
        src: ip.src,
        dst: ip.dst,
    })
}

/// The checks of [`locate_esp`]; `mk` builds the result from the outer header, the ESP
/// offset, the end of the outer packet, UDP encapsulation, SPI and low sequence number.
#[inline(always)]
fn locate_with<T>(
    data: &[u8],
    l3: usize,
    nat_t_port: u16,
    mk: impl FnOnce(&IpHeader, usize, usize, bool, u32, u32) -> T,
) -> Result<Option<T>, DropReason> {
    let Some(d) = data.get(l3..) else { return Err(DropReason::Truncated) };
    // IPv4 on a path of its own: its header stays in registers. (Through `IpHeader::parse`,
    // whose IPv6 arm returns in memory, the IPv4 header was stored to the stack byte by byte
    // and its flags read back as one 16-bit load: a store-forwarding stall per packet.)
    if d.first().is_some_and(|b| b >> 4 == 4) {
        return locate_in(data, l3, nat_t_port, IpHeader::parse_v4(d)?, mk);
    }
    match IpHeader::parse(d) {
        Ok(ip) => locate_in(data, l3, nat_t_port, ip, mk),
        // Not IPv4/IPv6: not ours.
        Err(DropReason::Unsupported) => Ok(None),
        Err(r) => Err(r),
    }
}

/// The rest of [`locate_with`], after the outer header.
#[inline(always)]
fn locate_in<T>(
    data: &[u8],
    l3: usize,
    nat_t_port: u16,
    ip: IpHeader,
    mk: impl FnOnce(&IpHeader, usize, usize, bool, u32, u32) -> T,
) -> Result<Option<T>, DropReason> {
    let end = l3 + ip.total_len;
    let (esp_offset, udp) = match ip.proto {
        PROTO_ESP => {
            if ip.fragment {
                // Reassembly is not done here; a fragment cannot be authenticated alone.
                return Err(DropReason::Unsupported);
            }
            (l3 + ip.hdr_len, false)
        }
        PROTO_UDP if !ip.later_fragment => {
            let u = l3 + ip.hdr_len;
            if u + UDP_HDR_LEN > end {
                return Err(DropReason::MalformedL4);
            }
            let dport = u16::from_be_bytes([data[u + 2], data[u + 3]]);
            if dport != nat_t_port {
                return Ok(None);
            }
            let payload = &data[u + UDP_HDR_LEN..end];
            if payload.len() < 4 || payload[..4] == [0, 0, 0, 0] {
                // NAT keepalive (0xff) or IKE behind the non-ESP marker: control traffic.
                return Ok(None);
            }
            if ip.fragment {
                return Err(DropReason::Unsupported);
            }
            (u + UDP_HDR_LEN, true)
        }
        _ => return Ok(None),
    };
    if esp_offset + MIN_ESP_LEN > end {
        return Err(DropReason::EspMalformed);
    }
    let e = &data[esp_offset..];
    let spi = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
    let seq_lo = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
    Ok(Some(mk(&ip, esp_offset, end, udp, spi, seq_lo)))
}

#[inline]
fn aad_and_nonce(
    sa: &SecurityAssociation,
    seq: u64,
    iv: &[u8; IV_LEN],
) -> ([u8; 12], usize, [u8; NONCE_LEN]) {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&sa.spi().to_be_bytes());
    let aad_len = if sa.esn() {
        aad[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        aad[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        12
    } else {
        aad[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    };
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..SALT_LEN].copy_from_slice(sa.salt());
    nonce[SALT_LEN..].copy_from_slice(iv);
    (aad, aad_len, nonce)
}

#[inline]
fn set_ethertype(data: &mut [u8], l3: usize, v6: bool) {
    if l3 >= 14 {
        let et = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        data[l3 - 2..l3].copy_from_slice(&et.to_be_bytes());
    }
}

/// Moves the `len` header bytes at `from` to `to` (as `copy_within`); the usual 14-byte
/// Ethernet header goes through registers instead of a `memmove` call.
#[inline(always)]
fn move_header(data: &mut [u8], from: usize, len: usize, to: usize) {
    if len == 14 {
        let mut h = [0u8; 14];
        h.copy_from_slice(&data[from..from + 14]);
        data[to..to + 14].copy_from_slice(&h);
    } else {
        data.copy_within(from..from + len, to);
    }
}

/// Encapsulates the IP packet at `l3` with `sa`, using the next sequence number of `state` as
/// both sequence number and explicit IV (RFC 4106 §3.1 allows any unique IV; the counter is the
/// usual choice and costs nothing). Checks and updates the lifetime; `events` hears about soft
/// and hard expiry and sequence overflow (once each).
#[inline]
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    events: impl FnMut(SaEventKind),
) -> Result<(), DropReason> {
    encapsulate_inner(pkt, l3, sa, state, now, None, events)
}

/// [`encapsulate`] with a caller-chosen explicit IV, for known-answer tests against published
/// vectors. The IV must never repeat under one key: production code uses [`encapsulate`].
pub fn encapsulate_with_iv<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    iv: [u8; IV_LEN],
    events: impl FnMut(SaEventKind),
) -> Result<(), DropReason> {
    encapsulate_inner(pkt, l3, sa, state, now, Some(iv), events)
}

#[inline(always)]
fn encapsulate_inner<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    iv: Option<[u8; IV_LEN]>,
    events: impl FnMut(SaEventKind),
) -> Result<(), DropReason> {
    let Some(d) = pkt.data().get(l3..) else { return Err(DropReason::Truncated) };
    let ip = IpHeader::parse(d)?;
    let plan = prepare_encap(pkt, l3, &ip, sa, state, now, iv, events)?;
    {
        let (ct, icv) = plan.crypto.split(pkt.data_mut()).ok_or(DropReason::EspNoRoom)?;
        sa.cipher()
            .seal(&plan.crypto.nonce, plan.crypto.aad(), ct, icv)
            .map_err(|_| DropReason::EspNoRoom)?;
    }
    finish_encap(pkt, &plan);
    Ok(())
}

/// Where one packet's AEAD input lies, and its nonce and AAD: the part of an encapsulation or
/// decapsulation handed to the provider (one packet of a batch). Kept small (offsets as `u32`,
/// packets are far shorter): a batch stores one per packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CryptoPlan {
    /// Offset of the ciphertext (plaintext before sealing) in the packet data; the ICV follows.
    ct_off: u32,
    /// Its length.
    ct_len: u32,
    aad: [u8; 12],
    aad_len: u8,
    pub nonce: [u8; NONCE_LEN],
}

impl CryptoPlan {
    #[inline(always)]
    fn new(ct_off: usize, ct_len: usize, aad: [u8; 12], aad_len: usize, nonce: [u8; NONCE_LEN]) -> Self {
        Self { ct_off: ct_off as u32, ct_len: ct_len as u32, aad, aad_len: aad_len as u8, nonce }
    }

    /// Offset of the ciphertext in the packet data.
    #[inline(always)]
    pub fn ct_off(&self) -> usize {
        self.ct_off as usize
    }

    /// Length of the ciphertext (without the ICV).
    #[inline(always)]
    pub fn ct_len(&self) -> usize {
        self.ct_len as usize
    }

    #[inline]
    pub fn aad(&self) -> &[u8] {
        &self.aad[..self.aad_len as usize]
    }

    /// The data and ICV ranges of `data`.
    #[inline]
    pub fn split<'a>(&self, data: &'a mut [u8]) -> Option<(&'a mut [u8], &'a mut [u8; ICV_LEN])> {
        let (off, len) = (self.ct_off(), self.ct_len());
        let r = data.get_mut(off..off + len + ICV_LEN)?;
        let (ct, icv) = r.split_at_mut(len);
        Some((ct, icv.try_into().ok()?))
    }
}

/// An encapsulation framed and waiting for its seal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncapPlan {
    pub crypto: CryptoPlan,
    /// IPv6 UDP encapsulation: (IP header start, IP header length) for the checksum over the
    /// ciphertext, computed after sealing.
    udp6: Option<(u16, u16)>,
}

/// Everything of an encapsulation but the seal: lifetime, sequence number, framing, headers.
/// `ip` is the header at `l3`, parsed by the caller.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_encap<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    ip: &IpHeader,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    iv: Option<[u8; IV_LEN]>,
    mut events: impl FnMut(SaEventKind),
) -> Result<EncapPlan, DropReason> {
    if !state.admit(sa, now, &mut events) {
        return Err(DropReason::EspSaExpired);
    }
    let udp = sa.udp_encap();
    let udp_len = if udp.is_some() { UDP_HDR_LEN } else { 0 };
    let (outer_len, payload_off, payload_len, next_header) = match sa.mode() {
        EspMode::Tunnel { .. } => {
            let outer_ip = sa.outer_template().map_or(20, |t| t.len());
            let nh = if ip.v6 { PROTO_IPV6 } else { PROTO_IPV4 };
            (outer_ip + udp_len + ESP_HDR_LEN + IV_LEN, l3, ip.total_len, nh)
        }
        EspMode::Transport => {
            if ip.fragment {
                return Err(DropReason::Unsupported);
            }
            (udp_len + ESP_HDR_LEN + IV_LEN, l3 + ip.hdr_len, ip.total_len - ip.hdr_len, ip.proto)
        }
    };
    // Pad so that payload ‖ pad ‖ pad length ‖ next header is a multiple of 4 (RFC 4303 §2.4).
    let pad = (4 - (payload_len + 2) % 4) % 4;
    let ct_len = payload_len + pad + 2;
    let new_len = payload_off + ct_len + ICV_LEN;
    // The outer IP packet, header included, must fit its length field (IPv4 total length;
    // IPv6 payload length, which excludes the 40-byte fixed header) and the SA's MTU. Checked
    // before anything is written or a sequence number is spent.
    let outer_v6 = sa.outer_template().map_or(ip.v6, |t| t.is_v6());
    let ip_total = new_len + outer_len - l3;
    if ip_total > if outer_v6 { u16::MAX as usize + 40 } else { u16::MAX as usize } {
        return Err(DropReason::EspTooBig);
    }
    if ip_total > sa.mtu_limit() {
        return Err(DropReason::EspMtuExceeded);
    }
    if pkt.headroom() < outer_len || pkt.len() + pkt.tailroom() < new_len {
        return Err(DropReason::EspNoRoom);
    }
    let seq = state.next_seq(sa, &mut events).ok_or(DropReason::EspSeqOverflow)?;
    let iv = iv.unwrap_or(seq.to_be_bytes());
    // Both fit (checked above): grow at the front, then at the back, and take the data once.
    pkt.prepend(outer_len).map_err(|_| DropReason::EspNoRoom)?;
    let total = outer_len + new_len;
    pkt.set_len(total).map_err(|_| DropReason::EspNoRoom)?;
    let ip_id = state.next_ip_id();
    let data = pkt.data_mut();
    {
        // Trailer: pad bytes 1 ..= pad (at most 3), pad length, next header (RFC 4303 §2.4): the
        // last `pad + 2` bytes of the ciphertext, merged into its last 8 bytes (which exist: the
        // ESP header and IV alone are 16) without a per-byte loop.
        const PAD: [u64; 4] = [0x00, 0x0101, 0x01_0202, 0x0102_0303];
        let end = outer_len + payload_off + ct_len;
        let last: &mut [u8; 8] = (&mut data[end - 8..end]).try_into().map_err(|_| DropReason::EspNoRoom)?;
        let mask = (1u64 << (8 * (pad + 2))) - 1;
        let trailer = (PAD[pad] << 8) | next_header as u64;
        *last = ((u64::from_be_bytes(*last) & !mask) | trailer).to_be_bytes();
    }
    // Tunnel SAs have an outer header template; transport SAs do not.
    // Lengths below fit their 16-bit fields: `ip_total` was checked above.
    let (esp, outer_ip_len) = match sa.outer_template() {
        Some(outer) => {
            move_header(data, outer_len, l3, 0);
            set_ethertype(data, l3, outer.is_v6());
            outer.write(&mut data[l3..], ip.tos, total - l3, ip_id);
            (l3 + outer.len() + udp_len, outer.len())
        }
        None => {
            data.copy_within(outer_len..outer_len + l3 + ip.hdr_len, 0);
            let proto = if udp.is_some() { PROTO_UDP } else { PROTO_ESP };
            let h = &mut data[l3..l3 + ip.hdr_len];
            h[ip.proto_off] = proto;
            if ip.v6 {
                h[4..6].copy_from_slice(&((total - l3 - 40) as u16).to_be_bytes());
            } else {
                h[2..4].copy_from_slice(&((total - l3) as u16).to_be_bytes());
                set_ipv4_checksum(h);
            }
            (l3 + ip.hdr_len + udp_len, ip.hdr_len)
        }
    };
    if let Some(u) = udp {
        let h = &mut data[esp - UDP_HDR_LEN..esp];
        h[0..2].copy_from_slice(&u.src_port.to_be_bytes());
        h[2..4].copy_from_slice(&u.dst_port.to_be_bytes());
        h[4..6].copy_from_slice(&((total - esp + UDP_HDR_LEN) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&[0, 0]);
    }
    data[esp..esp + 4].copy_from_slice(&sa.spi().to_be_bytes());
    data[esp + 4..esp + 8].copy_from_slice(&(seq as u32).to_be_bytes());
    data[esp + 8..esp + 16].copy_from_slice(&iv);
    let (aad, aad_len, nonce) = aad_and_nonce(sa, seq, &iv);
    let crypto = CryptoPlan::new(esp + ESP_HDR_LEN + IV_LEN, ct_len, aad, aad_len, nonce);
    // UDP over IPv6 needs a checksum (RFC 8200 §8.1), over the ciphertext: after the seal.
    let udp6 = (udp.is_some() && outer_v6).then_some((l3 as u16, outer_ip_len as u16));
    state.account(ip.total_len, now);
    let m = pkt.meta_mut();
    m.flags |= flags::ENCRYPTED;
    m.l3 = if outer_v6 { L3Kind::Ipv6 } else { L3Kind::Ipv4 };
    m.l3_offset = l3 as u16;
    m.spi = sa.spi();
    match udp {
        Some(u) => {
            m.l4_offset = (esp - UDP_HDR_LEN) as u16;
            m.l4_proto = PROTO_UDP;
            m.src_port = u.src_port;
            m.dst_port = u.dst_port;
            m.flow_class = FlowClass::EspInUdp;
        }
        None => {
            m.l4_offset = esp as u16;
            m.l4_proto = PROTO_ESP;
            m.src_port = 0;
            m.dst_port = 0;
            m.flow_class = FlowClass::Esp;
        }
    }
    Ok(EncapPlan { crypto, udp6 })
}

/// The part of an encapsulation after the seal (the IPv6 UDP checksum).
#[inline(always)]
pub(crate) fn finish_encap<B: PacketBuf>(pkt: &mut B, plan: &EncapPlan) {
    if let Some((ip_start, ip_len)) = plan.udp6 {
        set_udp6_checksum(pkt, ip_start as usize, ip_len as usize);
    }
}

#[inline(never)]
fn set_udp6_checksum<B: PacketBuf>(pkt: &mut B, ip_start: usize, ip_len: usize) {
    let (iph, udp) = pkt.data_mut()[ip_start..].split_at_mut(ip_len);
    let c = udp6_checksum(&iph[..40], udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
}

/// What decapsulation produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decapsulated {
    /// A packet, now at the same L3 offset, with the inner (tunnel) or restored (transport) IP
    /// header.
    Packet,
    /// An authentic dummy packet (next header 59, RFC 4303 §2.6 traffic-flow confidentiality):
    /// the caller discards it.
    Dummy,
}

/// Verifies and decapsulates the ESP packet found by [`locate_esp`] with `sa` (the SA its SPI
/// names): replay check, lifetime, in-place decryption, trailer checks, window update, then the
/// L2 (and, in transport mode, IP) header moved forward, and the inner packet checked against
/// the SA's selector (`PolicyDiscard` when it does not match). On error the packet is garbage (it may
/// be partly decrypted) and must be dropped.
#[inline]
pub fn decapsulate<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    loc: &EspLocation,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    events: impl FnMut(SaEventKind),
) -> Result<Decapsulated, DropReason> {
    decapsulate_one(pkt, l3, &InboundEsp::from(loc), sa, state, now, events)
}

/// [`decapsulate`] from an [`InboundEsp`] (the decrypt stage's ESN path).
#[inline]
pub(crate) fn decapsulate_one<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    loc: &InboundEsp,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    mut events: impl FnMut(SaEventKind),
) -> Result<Decapsulated, DropReason> {
    let plan = prepare_decap(pkt, loc, sa, state, now, &mut events)?;
    let opened = {
        let (ct, icv) = plan.crypto.split(pkt.data_mut()).ok_or(DropReason::EspMalformed)?;
        sa.cipher().open(&plan.crypto.nonce, plan.crypto.aad(), ct, icv).is_ok()
    };
    finish_decap(pkt, l3, &plan, opened, sa, state, now, events)
}

/// An inbound packet checked and waiting for its open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecapPlan {
    pub crypto: CryptoPlan,
    seq: u64,
    /// The outer header's TOS (for RFC 6040 ECN propagation). Only this is kept of the
    /// [`EspLocation`]: the plan is stored per packet of a batch, and the transport-mode path,
    /// which needs the whole outer header, parses it again (it is intact after the open).
    tos: u8,
}

#[inline]
fn replay_check(state: &SaState, seq: u64) -> Result<(), DropReason> {
    match state.replay() {
        Some(w) => w.check(seq).map_err(|e| match e {
            ReplayError::Replay => DropReason::EspReplay,
            ReplayError::TooOld => DropReason::EspTooOld,
        }),
        None => Ok(()),
    }
}

/// Everything of a decapsulation before the open: lifetime, replay check, lengths, nonce.
#[inline(always)]
pub(crate) fn prepare_decap<B: PacketBuf>(
    pkt: &B,
    loc: &InboundEsp,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    mut events: impl FnMut(SaEventKind),
) -> Result<DecapPlan, DropReason> {
    if !state.admit(sa, now, &mut events) {
        return Err(DropReason::EspSaExpired);
    }
    let seq = match state.replay() {
        Some(w) if sa.esn() => w.infer_esn(loc.seq_lo),
        _ => loc.seq_lo as u64,
    };
    replay_check(state, seq)?;
    let esp = loc.esp_offset;
    let ct_start = esp + ESP_HDR_LEN + IV_LEN;
    if loc.end > pkt.len() || ct_start + 4 + ICV_LEN > loc.end {
        return Err(DropReason::EspMalformed);
    }
    let ct_len = loc.end - ICV_LEN - ct_start;
    if !ct_len.is_multiple_of(4) {
        return Err(DropReason::EspMalformed);
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&pkt.data()[esp + ESP_HDR_LEN..ct_start]);
    let (aad, aad_len, nonce) = aad_and_nonce(sa, seq, &iv);
    Ok(DecapPlan { crypto: CryptoPlan::new(ct_start, ct_len, aad, aad_len, nonce), seq, tos: loc.tos })
}

/// True when the last `pad` bytes of `d` are 1, 2, …, `pad` (RFC 4303 §2.4). Up to 6 pad bytes
/// (a 4-byte aligned sender pads at most 3) are compared as one word, more byte by byte.
#[inline(always)]
fn pad_ok(d: &[u8], pad: usize) -> bool {
    // 0x0102030405060000 >> (8 * (6 - pad)) ends in the bytes 1 ..= pad.
    const ONE_TO_SIX: u64 = 0x0001_0203_0405_0600 >> 8;
    if pad <= 6 && d.len() >= 8 {
        let mut last = [0u8; 8];
        last.copy_from_slice(&d[d.len() - 8..]);
        let mask = if pad == 0 { 0 } else { u64::MAX >> (64 - 8 * pad) };
        let want = ONE_TO_SIX >> (8 * (6 - pad));
        return u64::from_be_bytes(last) & mask == want;
    }
    d[d.len() - pad..].iter().enumerate().all(|(i, &b)| b == i as u8 + 1)
}

/// The part of a decapsulation after the open (`opened`: the ICV verified): the replay window
/// (re-checked, since an earlier packet of the same batch may have taken the sequence number),
/// the lifetime (re-checked for the same reason), trailer, header move, selector.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn finish_decap<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    plan: &DecapPlan,
    opened: bool,
    sa: &SecurityAssociation,
    state: &mut SaState,
    now: Instant,
    mut events: impl FnMut(SaEventKind),
) -> Result<Decapsulated, DropReason> {
    if !opened {
        return Err(DropReason::EspAuthFailed);
    }
    let seq = plan.seq;
    replay_check(state, seq)?;
    if !state.admit(sa, now, &mut events) {
        return Err(DropReason::EspSaExpired);
    }
    if let Some(w) = state.replay_mut() {
        w.update(seq);
    }
    let (ct_start, ct_len) = (plan.crypto.ct_off(), plan.crypto.ct_len());
    let data = pkt.data_mut();
    let pad = data[ct_start + ct_len - 2] as usize;
    let next_header = data[ct_start + ct_len - 1];
    if pad + 2 > ct_len {
        return Err(DropReason::EspBadTrailer);
    }
    let payload_len = ct_len - 2 - pad;
    if !pad_ok(&data[ct_start..ct_start + payload_len + pad], pad) {
        return Err(DropReason::EspBadTrailer);
    }
    if next_header == PROTO_NONE {
        state.account(0, now);
        return Ok(Decapsulated::Dummy);
    }
    let inner = match sa.mode() {
        EspMode::Tunnel { .. } => {
            let want_v6 = match next_header {
                PROTO_IPV4 => false,
                PROTO_IPV6 => true,
                _ => return Err(DropReason::EspBadTrailer),
            };
            let p = &data[ct_start..ct_start + payload_len];
            let ip = IpHeader::parse(p)
                .map_err(|r| if r == DropReason::Unsupported { DropReason::EspBadTrailer } else { r })?;
            if ip.v6 != want_v6 {
                return Err(DropReason::EspBadTrailer);
            }
            // RFC 6040 (normal mode): congestion marked on the tunnel path is copied to an
            // ECN-capable inner packet. (A CE mark over a not-ECT inner packet is left as is.)
            if plan.tos & 3 == 3 {
                let h = &mut data[ct_start..ct_start + ip.hdr_len];
                if ip.v6 {
                    if (h[1] >> 4) & 3 != 0 {
                        h[1] |= 0x30;
                    }
                } else if h[1] & 3 != 0 {
                    h[1] |= 3;
                    set_ipv4_checksum(h);
                }
            }
            // TFC padding (RFC 4303 §2.4) may follow the inner packet: its own length rules.
            let shift = ct_start - l3;
            move_header(data, 0, l3, shift);
            set_ethertype(&mut data[shift..], l3, ip.v6);
            pkt.trim_front(shift).map_err(|_| DropReason::EspMalformed)?;
            pkt.set_len(l3 + ip.total_len).map_err(|_| DropReason::EspMalformed)?;
            ip
        }
        EspMode::Transport => {
            // The outer header as `locate_esp` parsed it (the same bytes, untouched by the open).
            let mut outer =
                data.get(l3..).and_then(|d| IpHeader::parse(d).ok()).ok_or(DropReason::EspMalformed)?;
            let h = outer.hdr_len;
            {
                let hdr = &mut data[l3..l3 + h];
                hdr[outer.proto_off] = next_header;
                if outer.v6 {
                    hdr[4..6].copy_from_slice(&((h - 40 + payload_len) as u16).to_be_bytes());
                } else {
                    hdr[2..4].copy_from_slice(&((h + payload_len) as u16).to_be_bytes());
                    set_ipv4_checksum(hdr);
                }
            }
            let shift = ct_start - (l3 + h);
            data.copy_within(0..l3 + h, shift);
            pkt.trim_front(shift).map_err(|_| DropReason::EspMalformed)?;
            pkt.set_len(l3 + h + payload_len).map_err(|_| DropReason::EspMalformed)?;
            outer.proto = next_header;
            outer.total_len = h + payload_len;
            outer
        }
    };
    state.account(inner.total_len, now);
    let key = inner.flow_key(&pkt.data()[l3..]);
    if !sa.admits_inner(&key) {
        return Err(DropReason::PolicyDiscard);
    }
    let m = pkt.meta_mut();
    m.flags |= flags::DECRYPTED;
    m.l3 = if inner.v6 { L3Kind::Ipv6 } else { L3Kind::Ipv4 };
    m.l3_offset = l3 as u16;
    m.l4_offset = (l3 + inner.hdr_len) as u16;
    m.l4_proto = inner.proto;
    (m.src_port, m.dst_port) = key.ports.unwrap_or((0, 0));
    m.spi = 0;
    m.dscp = inner.tos >> 2;
    m.flow_class = FlowClass::Data;
    Ok(Decapsulated::Packet)
}

#[cfg(test)]
mod tests {
    use super::pad_ok;

    /// The word-wide pad check agrees with the byte-by-byte definition for every pad length a
    /// packet can carry, with the pad bytes right and with each one of them wrong, and with or
    /// without payload bytes in front.
    #[test]
    fn pad_check_matches_the_bytewise_definition() {
        let naive =
            |d: &[u8], pad: usize| d[d.len() - pad..].iter().enumerate().all(|(i, &b)| b == i as u8 + 1);
        for payload in [0usize, 1, 5, 8, 20] {
            for pad in 0..=255usize {
                let mut d: Vec<u8> = (0..payload).map(|i| (i as u8).wrapping_mul(37) ^ 0x5a).collect();
                d.extend((1..=pad).map(|i| i as u8));
                assert!(pad_ok(&d, pad), "payload {payload} pad {pad}");
                assert_eq!(pad_ok(&d, pad), naive(&d, pad));
                for wrong in 0..pad.min(8) {
                    let mut e = d.clone();
                    let at = e.len() - pad + wrong;
                    e[at] ^= 0x80;
                    assert!(!pad_ok(&e, pad), "payload {payload} pad {pad} byte {wrong} wrong");
                }
                // A payload byte just before the pad never matters.
                if payload > 0 {
                    let mut e = d.clone();
                    let at = e.len() - pad - 1;
                    e[at] = e[at].wrapping_add(1);
                    assert!(pad_ok(&e, pad));
                }
            }
        }
    }
}
