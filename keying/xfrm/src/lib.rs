//! Mirror the Linux kernel's XFRM database into a wirespeed data plane.
//!
//! An IKE daemon (strongSwan's charon, libreswan's pluto) negotiates SAs and installs them, with
//! their keys, in the kernel over `NETLINK_XFRM`. This crate dumps and then follows that
//! database — SAs (`NEWSA`, `UPDSA`, `DELSA`, `FLUSHSA`, `EXPIRE`, `ALLOCSPI` placeholders) and
//! policies (`NEWPOLICY`, `UPDPOLICY`, `DELPOLICY`, `FLUSHPOLICY`) — and turns it into the
//! [`wirespeed_stages::esp::SaConfig`]s and [`wirespeed_stages::esp::Spd`] a wirespeed data plane
//! publishes. It also builds the feedback the daemon needs: cumulative counters
//! ([`msg::newae`]), data-plane soft/hard expiry ([`msg::expire`]) and SA requests for policies
//! without SA ([`msg::acquire`]).
//!
//! * [`wire`]: the kernel structures (`include/uapi/linux/xfrm.h`), decoded and encoded by hand
//!   (see the README for why), every decoder bounds-checked;
//! * [`msg`]: netlink framing, attributes, the message enum, request and feedback encoders;
//! * [`mirror`]: the state machine from events to the desired SA set and SPD, with the scoping
//!   rule that keeps the kernel from ever encrypting with a mirrored SA;
//! * [`socket`] (Linux): the `NETLINK_XFRM` socket and a non-blocking [`socket::Follower`].
//!
//! **Never two senders on one key.** Only SAs and policies scoped to the data plane by an
//! `if_id` or a mark ([`mirror::Scope`]) are mirrored; an outbound SA without such a scope is
//! refused ([`mirror::Refusal::UnscopedOutbound`]) because kernel traffic could select it too
//! and reuse its nonces.

pub mod feedback;
pub mod mirror;
pub mod msg;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod socket;
pub mod wire;

pub use feedback::{Feedback, SaCounters};
pub use mirror::{Applied, Mirror, MirrorConfig, MirrorStats, MirroredSa, Refusal, SaEntry, SaKey, Scope};
pub use msg::{ReplayValue, SaRef, XfrmMsg};
#[cfg(target_os = "linux")]
pub use socket::{Follower, Polled, SocketError, XfrmSocket};
pub use wire::DecodeError;
