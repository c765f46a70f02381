//! Per-packet metadata carried beside the bytes, filled by backends (Rx queue, RSS hash) and by
//! stages (offsets, flow key, class, output port).

/// What the classifier decided a packet is; steering and stages branch on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowClass {
    /// Not classified yet.
    #[default]
    Unclassified,
    /// Ordinary transit traffic (the fast path).
    Data,
    /// Traffic for the appliance itself: ARP, ND, ICMP to own addresses, SSH, management TCP.
    Management,
    /// Control-plane protocols: IKE (UDP 500, 4500 with the non-ESP marker), BGP.
    Control,
    /// ESP (IP protocol 50). ESP is a wire-level class like TCP or UDP here, not a stage
    /// concept: NIC RSS hashes it by SPI (DPDK `RTE_ETH_RSS_ESP`, ethtool `esp4`/`esp6` flow
    /// types) and so does [`crate::rss`].
    Esp,
    /// ESP in UDP (RFC 3948, port 4500, non-zero SPI).
    EspInUdp,
    /// Recognised but not handled by any stage (other EtherTypes, other protocols).
    Other,
}

/// Network-layer protocol found by the classifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum L3Kind {
    /// Not parsed yet / none.
    #[default]
    None,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP.
    Arp,
    /// Another EtherType.
    Other,
}

/// Bit flags in [`PacketMeta::flags`].
pub mod flags {
    /// The packet is an IP fragment (first or later); only the 2-tuple is meaningful.
    pub const FRAGMENT: u16 = 1 << 0;
    /// The packet carried at least one VLAN tag.
    pub const VLAN: u16 = 1 << 1;
    /// The IPv4 header had options / the IPv6 header had extension headers.
    pub const IP_OPTIONS: u16 = 1 << 2;
    /// `rss_hash` was computed by hardware (the NIC), not by software.
    pub const HW_RSS: u16 = 1 << 3;
    /// The packet was decapsulated from ESP on this pass.
    pub const DECRYPTED: u16 = 1 << 4;
    /// The packet was encapsulated into ESP on this pass.
    pub const ENCRYPTED: u16 = 1 << 5;
    /// The packet was handed to another shard on this pass (to the shard that owns its
    /// outbound SA): it is not handed on again.
    pub const HANDED_OFF: u16 = 1 << 6;
    /// Bits reserved for appliance-defined stages: no wirespeed stage or backend sets or clears
    /// them after Rx (backends start every packet with all flags clear).
    pub const APPLIANCE_MASK: u16 = 0xff00;
    /// The lowest appliance-defined bit (the others are `APPLIANCE_FIRST << 1` … `<< 7`).
    pub const APPLIANCE_FIRST: u16 = 1 << 8;
}

/// Metadata of one packet. `Copy`, 40 bytes, reset by the backend on every Rx.
///
/// Offsets are from the start of [`crate::PacketBuf::data`]; a stage that moves the start of the
/// data (prepend/trim) is responsible for keeping them right or marking the packet unclassified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// Port the packet was received on.
    pub rx_port: u16,
    /// Queue the packet was received on.
    pub rx_queue: u16,
    /// RSS hash, from the NIC or the software dispatcher.
    pub rss_hash: Option<u32>,
    /// Offset of the network header (after Ethernet and VLAN tags).
    pub l3_offset: u16,
    /// Offset of the transport header (after IP options / IPv6 extension headers).
    pub l4_offset: u16,
    /// Network-layer protocol.
    pub l3: L3Kind,
    /// IP protocol / IPv6 next header of the transport header at `l4_offset` (0 when none).
    pub l4_proto: u8,
    /// Transport source port (TCP/UDP), 0 when none.
    pub src_port: u16,
    /// Transport destination port (TCP/UDP), 0 when none.
    pub dst_port: u16,
    /// ESP SPI (ESP or ESP-in-UDP), 0 when none.
    pub spi: u32,
    /// Outermost VLAN ID, 0 when untagged.
    pub vlan: u16,
    /// Classifier verdict.
    pub flow_class: FlowClass,
    /// DSCP of the outer IP header.
    pub dscp: u8,
    /// Bits from [`flags`].
    pub flags: u16,
    /// Port the packet leaves by (set by the forward stage; 0 by default).
    pub out_port: u16,
    /// Free for one stage to hand a small value to a later one (e.g. an SA or neighbor index).
    pub user: u32,
}

impl PacketMeta {
    /// Metadata of a freshly received packet.
    #[inline]
    pub fn received(port: u16, queue: u16) -> Self {
        Self { rx_port: port, rx_queue: queue, ..Self::default() }
    }

    /// True when `flag` (from [`flags`]) is set.
    #[inline]
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}
