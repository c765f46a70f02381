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
        ///
        /// The built-in reasons are those of the core and of the stages wirespeed ships; an
        /// appliance's own stages get their reasons from [`DropReason::register`] (a
        /// [`DropReason::Custom`] slot with a name), counted like the built-in ones.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $( $(#[$doc])* $name, )*
            /// An appliance-defined reason: one of [`CustomReason::SLOTS`] slots, named when it
            /// is registered ([`DropReason::register`]).
            Custom(CustomReason),
        }

        /// Dense indices of the built-in reasons.
        #[allow(dead_code)]
        enum BuiltinIndex {
            $( $name, )*
        }

        impl DropReason {
            /// The built-in reasons, in counter order.
            pub const BUILTIN: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of built-in reasons.
            pub const BUILTIN_COUNT: usize = Self::BUILTIN.len();
            /// Number of counter slots: every built-in reason, then every custom slot (the length
            /// of a drop-counter array).
            pub const COUNT: usize = Self::BUILTIN_COUNT + CustomReason::SLOTS;
            /// Every reason, built-in then custom slots, in counter order (`ALL[r.index()] == r`).
            pub const ALL: &'static [DropReason] = &{
                let mut all = [DropReason::Shutdown; Self::COUNT];
                let mut i = 0;
                while i < Self::BUILTIN_COUNT {
                    all[i] = Self::BUILTIN[i];
                    i += 1;
                }
                let mut slot = 0;
                while slot < CustomReason::SLOTS {
                    all[Self::BUILTIN_COUNT + slot] = DropReason::Custom(CustomReason(slot as u8));
                    slot += 1;
                }
                all
            };

            const BUILTIN_NAMES: &'static [&'static str] = &[$($label,)*];

            /// Stable snake_case name, used in stats output: the built-in label, or the name a
            /// custom reason was registered with (`custom_N` for a slot never registered).
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$name => $label,)*
                    DropReason::Custom(c) => c.name(),
                }
            }

            /// Index into a drop-counter array (`0..COUNT`).
            #[inline]
            pub const fn index(self) -> usize {
                match self {
                    $(DropReason::$name => BuiltinIndex::$name as usize,)*
                    DropReason::Custom(c) => Self::BUILTIN_COUNT + c.0 as usize,
                }
            }
        }
    };
}

drop_reasons! {
    /// The buffer pool had no free buffer for a received frame.
    PoolExhausted = "pool_exhausted",
    /// The queue's Rx ring was full when a frame arrived: the shard did not keep up (counted
    /// from the backend's statistics: AF_XDP `rx_ring_full`, DPDK `imissed`).
    RxRingFull = "rx_ring_full",
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
    /// The next hop is being resolved (ARP / Neighbor Discovery) and the bounded queue of
    /// packets waiting for it was full (Linux's `unres_qlen` overflow).
    NeighborQueueFull = "neighbor_queue_full",
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
    /// IP reassembly: a fragment overlapped another of its datagram (RFC 5722): the whole
    /// datagram is discarded, every fragment held counted.
    ReasmOverlap = "reasm_overlap",
    /// IP reassembly: an exact duplicate of a fragment already held (only the copy is dropped).
    ReasmDuplicate = "reasm_duplicate",
    /// IP reassembly: the datagram would not fit one buffer (or 65 535 bytes).
    ReasmTooBig = "reasm_too_big",
    /// IP reassembly: the datagram was incomplete when its timeout expired (every fragment held
    /// counted).
    ReasmTimeout = "reasm_timeout",
    /// IP reassembly: every reassembly context was busy.
    ReasmNoContext = "reasm_no_context",
    /// IP reassembly: a fragment no datagram can be built from (a non-final fragment not a
    /// multiple of 8 bytes, empty, past the datagram's end, a second end, too many fragments).
    ReasmMalformed = "reasm_malformed",
    /// The packet was dropped because its shard was shutting down.
    Shutdown = "shutdown",
}

/// Number of appliance-defined drop reasons a process can register.
const CUSTOM_SLOTS: usize = 32;

/// One of the [`CustomReason::SLOTS`] appliance-defined drop-reason slots. Get one from
/// [`DropReason::register`] (by name) or [`CustomReason::new`] (by slot number).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomReason(u8);

/// The slot and its name: `CustomReason(0, "fw_icmp_denied")`, so a `DropReason`'s `Debug` says
/// which custom reason it is.
impl std::fmt::Debug for CustomReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CustomReason").field(&self.0).field(&self.name()).finish()
    }
}

/// Names of the registered custom reasons, by slot. Written at start-up only (registration), read
/// when counters are printed; never touched per packet.
static CUSTOM_NAMES: std::sync::RwLock<[Option<&'static str>; CUSTOM_SLOTS]> =
    std::sync::RwLock::new([None; CUSTOM_SLOTS]);

/// Default names of unregistered slots (`custom_0` …), so [`DropReason::name`] is always
/// `&'static str` without allocating.
const UNNAMED: [&str; CUSTOM_SLOTS] = [
    "custom_0",
    "custom_1",
    "custom_2",
    "custom_3",
    "custom_4",
    "custom_5",
    "custom_6",
    "custom_7",
    "custom_8",
    "custom_9",
    "custom_10",
    "custom_11",
    "custom_12",
    "custom_13",
    "custom_14",
    "custom_15",
    "custom_16",
    "custom_17",
    "custom_18",
    "custom_19",
    "custom_20",
    "custom_21",
    "custom_22",
    "custom_23",
    "custom_24",
    "custom_25",
    "custom_26",
    "custom_27",
    "custom_28",
    "custom_29",
    "custom_30",
    "custom_31",
];

impl CustomReason {
    /// How many custom slots exist (each has its own counter in every shard).
    pub const SLOTS: usize = CUSTOM_SLOTS;

    /// Slot `slot`, or `None` when it is not below [`CustomReason::SLOTS`].
    pub const fn new(slot: u8) -> Option<Self> {
        if (slot as usize) < Self::SLOTS { Some(Self(slot)) } else { None }
    }

    /// The slot number.
    pub const fn slot(self) -> u8 {
        self.0
    }

    /// The registered name, or `custom_N` when the slot was never named.
    pub fn name(self) -> &'static str {
        let names = CUSTOM_NAMES.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        names[usize::from(self.0)].unwrap_or(UNNAMED[usize::from(self.0)])
    }
}

/// The reason's stable name ([`DropReason::name`]): `tx_full`, or the name a custom reason was
/// registered with (`custom_N` for a slot never registered).
///
/// ```
/// use wirespeed_core::{CustomReason, DropReason};
///
/// assert_eq!(DropReason::EspWrongEndpoint.to_string(), "esp_wrong_endpoint");
/// let r = DropReason::register("display_example")?;
/// assert_eq!(format!("{r}"), "display_example");
/// assert_eq!(DropReason::Custom(CustomReason::new(31).unwrap()).to_string(), "custom_31");
/// assert!(format!("{r:?}").ends_with(", \"display_example\"))"), "{r:?}");
/// # Ok::<(), wirespeed_core::DropReasonError>(())
/// ```
impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The slot's name, as [`CustomReason::name`].
impl std::fmt::Display for CustomReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Why a custom drop reason could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReasonError {
    /// The name is empty or not snake_case ASCII (`[a-z0-9_]`, starting with a letter).
    #[error("drop reason name `{0}` is not snake_case ASCII starting with a letter")]
    BadName(&'static str),
    /// The name is a built-in reason's, or a `custom_N` default name.
    #[error("drop reason name `{0}` is reserved")]
    Reserved(&'static str),
    /// Every custom slot is taken.
    #[error("all {slots} custom drop reasons are registered; cannot add `{name}`")]
    Full {
        /// The name refused.
        name: &'static str,
        /// How many slots exist.
        slots: usize,
    },
    /// The slot asked for is already registered under another name.
    #[error("custom drop reason slot {slot} is already `{existing}`, cannot name it `{name}`")]
    SlotTaken {
        /// The slot.
        slot: u8,
        /// Its name.
        existing: &'static str,
        /// The name refused.
        name: &'static str,
    },
}

impl DropReason {
    /// Registers an appliance-defined reason called `name` (snake_case, as it appears in stats)
    /// and returns it; registering a name again returns the same reason. Call at start-up and
    /// keep the result in the stage; the per-packet cost of a custom drop is the same as a
    /// built-in one. Names are process-wide.
    ///
    /// ```
    /// use wirespeed_core::{DropReason, ShardCounters};
    ///
    /// let denied = DropReason::register("firewall_denied")?;
    /// assert_eq!(DropReason::register("firewall_denied")?, denied);
    /// let mut c = ShardCounters::default();
    /// c.drop_packet(denied);
    /// assert_eq!(c.drops_of(denied), 1);
    /// assert_eq!(c.nonzero_drops().next(), Some((denied, 1)));
    /// assert_eq!(denied.name(), "firewall_denied");
    /// assert_eq!(DropReason::from_name("firewall_denied"), Some(denied));
    /// # Ok::<(), wirespeed_core::verdict::DropReasonError>(())
    /// ```
    pub fn register(name: &'static str) -> Result<DropReason, DropReasonError> {
        Self::check_name(name)?;
        let mut names = CUSTOM_NAMES.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = names.iter().position(|n| *n == Some(name)) {
            return Ok(DropReason::Custom(CustomReason(slot as u8)));
        }
        let slot = names
            .iter()
            .position(Option::is_none)
            .ok_or(DropReasonError::Full { name, slots: CUSTOM_SLOTS })?;
        names[slot] = Some(name);
        Ok(DropReason::Custom(CustomReason(slot as u8)))
    }

    /// Names custom slot `slot` (for appliances that fix their slot numbers in constants, e.g.
    /// `const DENIED: CustomReason = …`); naming a slot again with the same name is a no-op.
    pub fn register_slot(slot: CustomReason, name: &'static str) -> Result<DropReason, DropReasonError> {
        Self::check_name(name)?;
        let mut names = CUSTOM_NAMES.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match names[usize::from(slot.0)] {
            Some(existing) if existing != name => {
                return Err(DropReasonError::SlotTaken { slot: slot.0, existing, name });
            }
            _ => names[usize::from(slot.0)] = Some(name),
        }
        Ok(DropReason::Custom(slot))
    }

    /// The reason with this stats name: a built-in label, a registered custom name, or a
    /// `custom_N` slot name.
    pub fn from_name(name: &str) -> Option<DropReason> {
        if let Some(i) = Self::BUILTIN_NAMES.iter().position(|n| *n == name) {
            return Some(Self::BUILTIN[i]);
        }
        Self::ALL[Self::BUILTIN_COUNT..].iter().copied().find(|r| r.name() == name)
    }

    /// True for an appliance-defined reason.
    pub const fn is_custom(self) -> bool {
        matches!(self, DropReason::Custom(_))
    }

    fn check_name(name: &'static str) -> Result<(), DropReasonError> {
        let ok = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(DropReasonError::BadName(name));
        }
        if Self::BUILTIN_NAMES.contains(&name) || UNNAMED.contains(&name) {
            return Err(DropReasonError::Reserved(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_name(r.name()), Some(*r), "{r:?}");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn custom_reasons_register_once_and_refuse_bad_names() {
        let a = DropReason::register("test_custom_a").unwrap();
        assert!(a.is_custom());
        assert_eq!(DropReason::register("test_custom_a"), Ok(a));
        let b = DropReason::register("test_custom_b").unwrap();
        assert_ne!(a, b);
        assert_ne!(a.index(), b.index());
        assert!(a.index() >= DropReason::BUILTIN_COUNT && a.index() < DropReason::COUNT);
        assert_eq!(DropReason::register("no_route"), Err(DropReasonError::Reserved("no_route")));
        assert_eq!(DropReason::register("custom_3"), Err(DropReasonError::Reserved("custom_3")));
        assert_eq!(DropReason::register("Bad-Name"), Err(DropReasonError::BadName("Bad-Name")));
        assert_eq!(DropReason::register(""), Err(DropReasonError::BadName("")));
        let DropReason::Custom(slot) = a else { unreachable!() };
        assert_eq!(DropReason::register_slot(slot, "test_custom_a"), Ok(a));
        assert!(matches!(DropReason::register_slot(slot, "other"), Err(DropReasonError::SlotTaken { .. })));
        assert_eq!(CustomReason::new(CustomReason::SLOTS as u8), None);
    }
}
