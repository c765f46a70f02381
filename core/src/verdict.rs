//! What a stage decides for a packet, and why packets are dropped.

/// A stage's decision for one packet. `Copy`, so deciding costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going to the next stage.
    Continue,
    /// Keep going, and leave by `port` (sets [`crate::PacketMeta::out_port`]).
    Forward {
        /// Output port.
        port: u16,
    },
    /// Hand to the control plane (management queue / control shard).
    Punt,
    /// Drop, counted under the reason.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $name:ident = $label:literal, )*) => {
        /// Why a packet was dropped. Every drop in wirespeed has one, and a counter per shard.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $name, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons (the length of a drop-counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name, used in stats output.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }

            /// Index into a drop-counter array.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// The buffer pool had no free buffer for a received frame.
    PoolExhausted = "pool_exhausted",
    /// The Tx queue was full.
    TxFull = "tx_full",
    /// The frame was larger than a buffer or the port MTU.
    TooLarge = "too_large",
    /// A header was cut short.
    Truncated = "truncated",
    /// Malformed Ethernet / VLAN header.
    MalformedL2 = "malformed_l2",
    /// Malformed IPv4 header (version, IHL, total length, checksum).
    MalformedIpv4 = "malformed_ipv4",
    /// Malformed IPv6 header or extension header chain.
    MalformedIpv6 = "malformed_ipv6",
    /// Malformed TCP/UDP/ICMP header.
    MalformedL4 = "malformed_l4",
    /// A protocol no stage handles (and no rule says to pass it).
    Unsupported = "unsupported",
    /// IPv4 TTL or IPv6 hop limit reached zero.
    TtlExpired = "ttl_expired",
    /// No route to the destination.
    NoRoute = "no_route",
    /// The next hop has no resolved neighbor (MAC).
    NoNeighbor = "no_neighbor",
    /// A steering rule said drop.
    SteeringDrop = "steering_drop",
    /// The software dispatcher's ring to the owning shard was full.
    DispatchRingFull = "dispatch_ring_full",
    /// The punt queue to the control plane was full.
    PuntQueueFull = "punt_queue_full",
    /// A frame punted to the control plane that it neither answered nor delivered to a socket.
    ControlIgnored = "control_ignored",
    /// An IPsec policy said discard.
    PolicyDiscard = "policy_discard",
    /// No SA for the SPI (inbound) or the policy (outbound).
    EspNoSa = "esp_no_sa",
    /// A sequence number already seen (replay).
    EspReplay = "esp_replay",
    /// A sequence number left of the anti-replay window.
    EspTooOld = "esp_too_old",
    /// The ICV did not verify (forged or corrupted).
    EspAuthFailed = "esp_auth_failed",
    /// Bad ESP padding or next-header after decryption.
    EspBadTrailer = "esp_bad_trailer",
    /// Malformed ESP / UDP-encapsulated ESP header.
    EspMalformed = "esp_malformed",
    /// The SA reached its lifetime (packets, bytes or time).
    EspSaExpired = "esp_sa_expired",
    /// The outbound sequence number would wrap.
    EspSeqOverflow = "esp_seq_overflow",
    /// No headroom/tailroom (or MTU) for the ESP encapsulation.
    EspNoRoom = "esp_no_room",
    /// An inbound ESP packet's SPI names an SA, but its outer addresses are not the SA's tunnel
    /// endpoints (misconfigured `local`/`remote`, or a spoofed packet).
    EspWrongEndpoint = "esp_wrong_endpoint",
    /// The encapsulated packet would not fit the outer IP header's 16-bit length field.
    EspTooBig = "esp_too_big",
    /// The encapsulated packet exceeds the configured outer MTU.
    EspMtuExceeded = "esp_mtu_exceeded",
    /// The packet was dropped because its shard was shutting down.
    Shutdown = "shutdown",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
