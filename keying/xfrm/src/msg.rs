//! Netlink framing, attributes and the XFRM messages a mirror receives and sends.

use crate::wire::{
    self, AeventId, AlgoAead, DecodeError, EncapTmpl, LifetimeCur, MAX_TEMPLATES, Mark, NLMSG_HDR,
    ReplayState, ReplayStateEsn, UserAcquire, UserTmpl, UserpolicyId, UserpolicyInfo, UsersaId, UsersaInfo,
    align4, attr, msg_type,
};

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
pub const NLMSG_OVERRUN: u16 = 4;

/// `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlHeader {
    /// Length including the header.
    pub len: u32,
    /// Message type.
    pub kind: u16,
    /// `NLM_F_*`.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Sender port id (0 the kernel).
    pub pid: u32,
}

/// Splits a datagram into netlink messages. After the first error it yields nothing more: a
/// bad length leaves no trustworthy boundary for the rest.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf, failed: false }
}

/// Iterator of [`messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(NlHeader, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let arr4 =
            |o: usize| -> [u8; 4] { b.get(o..o + 4).and_then(|s| s.try_into().ok()).unwrap_or([0; 4]) };
        let arr2 =
            |o: usize| -> [u8; 2] { b.get(o..o + 2).and_then(|s| s.try_into().ok()).unwrap_or([0; 2]) };
        if b.len() < NLMSG_HDR {
            self.failed = true;
            return Some(Err(DecodeError::Truncated { what: "nlmsghdr", need: NLMSG_HDR, have: b.len() }));
        }
        let h = NlHeader {
            len: u32::from_ne_bytes(arr4(0)),
            kind: u16::from_ne_bytes(arr2(4)),
            flags: u16::from_ne_bytes(arr2(6)),
            seq: u32::from_ne_bytes(arr4(8)),
            pid: u32::from_ne_bytes(arr4(12)),
        };
        let len = h.len as usize;
        if len < NLMSG_HDR || len > b.len() {
            self.failed = true;
            return Some(Err(DecodeError::BadMessageLength { len: h.len, remaining: b.len() }));
        }
        let payload = &b[NLMSG_HDR..len];
        self.rest = b.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((h, payload)))
    }
}

/// Iterates the `struct rtattr`s of `b`: `(type, payload)`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DecodeError>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || b.is_empty() {
            return None;
        }
        if b.len() < 4 {
            failed = true;
            return Some(Err(DecodeError::Truncated { what: "rtattr", need: 4, have: b.len() }));
        }
        let len = u16::from_ne_bytes([b[0], b[1]]);
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER live in the top bits of the type.
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if (len as usize) < 4 || len as usize > b.len() {
            failed = true;
            return Some(Err(DecodeError::BadAttrLength { kind, len, remaining: b.len() }));
        }
        let payload = &b[4..len as usize];
        b = b.get(align4(len as usize)..).unwrap_or(&[]);
        Some(Ok((kind, payload)))
    })
}

/// The attributes of an XFRM message that a mirror uses. Unknown attributes are counted in
/// `unknown` and otherwise skipped (newer kernels add attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// `XFRMA_ALG_AEAD`.
    pub aead: Option<AlgoAead>,
    /// `XFRMA_ALG_CRYPT` name (the key is wiped: wirespeed only runs AEADs).
    pub crypt: Option<String>,
    /// `XFRMA_ALG_AUTH` or `XFRMA_ALG_AUTH_TRUNC` name.
    pub auth: Option<String>,
    /// `XFRMA_ALG_COMP` name.
    pub comp: Option<String>,
    /// `XFRMA_ENCAP`.
    pub encap: Option<EncapTmpl>,
    /// `XFRMA_REPLAY_VAL`.
    pub replay: Option<ReplayState>,
    /// `XFRMA_REPLAY_ESN_VAL`.
    pub replay_esn: Option<ReplayStateEsn>,
    /// `XFRMA_LTIME_VAL`.
    pub ltime: Option<LifetimeCur>,
    /// `XFRMA_LASTUSED` (seconds since the epoch).
    pub last_used: Option<u64>,
    /// `XFRMA_MARK`.
    pub mark: Option<Mark>,
    /// `XFRMA_IF_ID`.
    pub if_id: Option<u32>,
    /// `XFRMA_SA_EXTRA_FLAGS`.
    pub extra_flags: Option<u32>,
    /// `XFRMA_SA_DIR` (1 in, 2 out).
    pub sa_dir: Option<u8>,
    /// `XFRMA_SA_PCPU`: the CPU a per-CPU SA (RFC 9611) serves.
    pub pcpu: Option<u32>,
    /// `XFRMA_SA` (the full SA in a DELSA notification).
    pub sa: Option<UsersaInfo>,
    /// `XFRMA_POLICY` (the full policy in a DELPOLICY notification).
    pub policy: Option<UserpolicyInfo>,
    /// `XFRMA_TMPL`.
    pub templates: Vec<UserTmpl>,
    /// `XFRMA_POLICY_TYPE` (0 main, 1 sub).
    pub policy_type: Option<u8>,
    /// Attributes not listed here.
    pub unknown: u32,
}

fn u32_attr(kind: &'static str, p: &[u8]) -> Result<u32, DecodeError> {
    let a: [u8; 4] = p.get(..4).and_then(|s| s.try_into().ok()).ok_or(DecodeError::Truncated {
        what: kind,
        need: 4,
        have: p.len(),
    })?;
    Ok(u32::from_ne_bytes(a))
}

impl Attrs {
    /// Decodes the attributes in `b`.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let mut a = Attrs::default();
        for item in attrs(b) {
            let (kind, p) = item?;
            match kind {
                attr::ALG_AEAD => a.aead = Some(AlgoAead::parse(p)?),
                attr::ALG_CRYPT => a.crypt = Some(wire::parse_algo_name(p, wire::ALGO_SIZE)?),
                attr::ALG_AUTH => a.auth = Some(wire::parse_algo_name(p, wire::ALGO_SIZE)?),
                attr::ALG_AUTH_TRUNC => a.auth = Some(wire::parse_algo_name(p, wire::ALGO_AUTH_SIZE)?),
                attr::ALG_COMP => a.comp = Some(wire::parse_algo_name(p, wire::ALGO_SIZE)?),
                attr::ENCAP => a.encap = Some(EncapTmpl::parse(p)?),
                attr::REPLAY_VAL => a.replay = Some(ReplayState::parse(p)?),
                attr::REPLAY_ESN_VAL => a.replay_esn = Some(ReplayStateEsn::parse(p)?),
                attr::LTIME_VAL => a.ltime = Some(LifetimeCur::parse(p)?),
                attr::LASTUSED => {
                    let v: [u8; 8] = p
                        .get(..8)
                        .and_then(|s| s.try_into().ok())
                        .ok_or(DecodeError::Truncated { what: "XFRMA_LASTUSED", need: 8, have: p.len() })?;
                    a.last_used = Some(u64::from_ne_bytes(v));
                }
                attr::MARK => a.mark = Some(Mark::parse(p)?),
                attr::IF_ID => a.if_id = Some(u32_attr("XFRMA_IF_ID", p)?),
                attr::SA_EXTRA_FLAGS => a.extra_flags = Some(u32_attr("XFRMA_SA_EXTRA_FLAGS", p)?),
                attr::SA_DIR => {
                    a.sa_dir = Some(*p.first().ok_or(DecodeError::Truncated {
                        what: "XFRMA_SA_DIR",
                        need: 1,
                        have: 0,
                    })?)
                }
                attr::SA_PCPU => a.pcpu = Some(u32_attr("XFRMA_SA_PCPU", p)?),
                attr::SA => a.sa = Some(UsersaInfo::parse(p)?),
                attr::POLICY => a.policy = Some(UserpolicyInfo::parse(p)?),
                attr::POLICY_TYPE => {
                    a.policy_type = Some(*p.first().ok_or(DecodeError::Truncated {
                        what: "XFRMA_POLICY_TYPE",
                        need: 1,
                        have: 0,
                    })?)
                }
                attr::TMPL => {
                    let n = p.len() / UserTmpl::SIZE;
                    if n > MAX_TEMPLATES {
                        return Err(DecodeError::TooManyTemplates(n));
                    }
                    a.templates =
                        p.chunks_exact(UserTmpl::SIZE).map(UserTmpl::parse).collect::<Result<Vec<_>, _>>()?;
                }
                _ => a.unknown = a.unknown.saturating_add(1),
            }
        }
        Ok(a)
    }
}

/// An SA as the kernel describes it: `xfrm_usersa_info` plus attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaMsg {
    /// The fixed part.
    pub info: UsersaInfo,
    /// The attributes (algorithms, keys, encapsulation, replay state, mark, if_id…).
    pub attrs: Attrs,
}

/// A policy: `xfrm_userpolicy_info` plus attributes (templates, mark, if_id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMsg {
    /// The fixed part.
    pub info: UserpolicyInfo,
    /// The attributes.
    pub attrs: Attrs,
}

/// One decoded message of `NETLINK_XFRM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XfrmMsg {
    /// `XFRM_MSG_NEWSA` (also the answer to GETSA dumps and to ALLOCSPI).
    NewSa(SaMsg),
    /// `XFRM_MSG_UPDSA`: replaces an SA (charon fills an ALLOCSPI placeholder with it).
    UpdSa(SaMsg),
    /// `XFRM_MSG_DELSA`; the notification carries the whole SA in `attrs.sa`.
    DelSa {
        /// Which SA.
        id: UsersaId,
        /// Its attributes (mark, if_id, `XFRMA_SA`).
        attrs: Attrs,
    },
    /// `XFRM_MSG_FLUSHSA` of one protocol (0 all).
    FlushSa {
        /// `IPSEC_PROTO_ANY` (255) or 0 for all, else the protocol.
        proto: u8,
    },
    /// `XFRM_MSG_NEWPOLICY` (also the answer to GETPOLICY dumps).
    NewPolicy(PolicyMsg),
    /// `XFRM_MSG_UPDPOLICY`.
    UpdPolicy(PolicyMsg),
    /// `XFRM_MSG_DELPOLICY`; the notification carries the whole policy in `attrs.policy`.
    DelPolicy {
        /// Which policy.
        id: UserpolicyId,
        /// Its attributes.
        attrs: Attrs,
    },
    /// `XFRM_MSG_FLUSHPOLICY`.
    FlushPolicy {
        /// `XFRMA_POLICY_TYPE`, when given.
        policy_type: Option<u8>,
    },
    /// `XFRM_MSG_ALLOCSPI`: a placeholder SA with a reserved SPI range.
    AllocSpi {
        /// The placeholder.
        sa: SaMsg,
        /// Lowest SPI.
        min: u32,
        /// Highest SPI.
        max: u32,
    },
    /// `XFRM_MSG_ACQUIRE`: a policy needs an SA.
    Acquire {
        /// The fixed part.
        acquire: UserAcquire,
        /// Templates, mark, if_id.
        attrs: Attrs,
    },
    /// `XFRM_MSG_EXPIRE`: an SA reached a soft or hard limit.
    Expire {
        /// The SA.
        sa: SaMsg,
        /// Hard (the kernel deletes the SA) or soft (rekey now).
        hard: bool,
    },
    /// `XFRM_MSG_POLEXPIRE`.
    PolExpire {
        /// The policy.
        policy: PolicyMsg,
        /// Hard or soft.
        hard: bool,
    },
    /// `XFRM_MSG_NEWAE`: counters and replay state of an SA.
    NewAe {
        /// The SA and flags.
        id: AeventId,
        /// `XFRMA_LTIME_VAL`, `XFRMA_REPLAY_VAL`…
        attrs: Attrs,
    },
    /// `NLMSG_DONE`: end of a dump.
    Done,
    /// `NLMSG_ERROR` (`errno` 0 is an acknowledgement).
    Error {
        /// Negative errno.
        errno: i32,
        /// Header of the request it answers.
        request: NlHeader,
    },
    /// Any other type (GETSA requests seen by a monitor, MIGRATE, MAPPING, REPORT…).
    Other {
        /// Its type.
        kind: u16,
    },
}

fn sa_msg(p: &[u8], fixed: usize) -> Result<SaMsg, DecodeError> {
    let info = UsersaInfo::parse(p)?;
    Ok(SaMsg { info, attrs: Attrs::parse(p.get(align4(fixed)..).unwrap_or(&[]))? })
}

fn policy_msg(p: &[u8], fixed: usize) -> Result<PolicyMsg, DecodeError> {
    let info = UserpolicyInfo::parse(p)?;
    Ok(PolicyMsg { info, attrs: Attrs::parse(p.get(align4(fixed)..).unwrap_or(&[]))? })
}

fn tail(p: &[u8], fixed: usize) -> &[u8] {
    p.get(align4(fixed)..).unwrap_or(&[])
}

impl XfrmMsg {
    /// Decodes the payload of one netlink message of type `kind`.
    pub fn decode(kind: u16, p: &[u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            msg_type::NEWSA => XfrmMsg::NewSa(sa_msg(p, UsersaInfo::SIZE)?),
            msg_type::UPDSA => XfrmMsg::UpdSa(sa_msg(p, UsersaInfo::SIZE)?),
            msg_type::DELSA => {
                XfrmMsg::DelSa { id: UsersaId::parse(p)?, attrs: Attrs::parse(tail(p, UsersaId::SIZE))? }
            }
            msg_type::FLUSHSA => XfrmMsg::FlushSa {
                proto: *p.first().ok_or(DecodeError::Truncated {
                    what: "xfrm_usersa_flush",
                    need: 1,
                    have: 0,
                })?,
            },
            msg_type::NEWPOLICY => XfrmMsg::NewPolicy(policy_msg(p, UserpolicyInfo::SIZE)?),
            msg_type::UPDPOLICY => XfrmMsg::UpdPolicy(policy_msg(p, UserpolicyInfo::SIZE)?),
            msg_type::DELPOLICY => XfrmMsg::DelPolicy {
                id: UserpolicyId::parse(p)?,
                attrs: Attrs::parse(tail(p, UserpolicyId::SIZE))?,
            },
            msg_type::FLUSHPOLICY => XfrmMsg::FlushPolicy { policy_type: Attrs::parse(p)?.policy_type },
            msg_type::ALLOCSPI => {
                let info = UsersaInfo::parse(p)?;
                if p.len() < wire::USERSPI_INFO_SIZE {
                    return Err(DecodeError::Truncated {
                        what: "xfrm_userspi_info",
                        need: wire::USERSPI_INFO_SIZE,
                        have: p.len(),
                    });
                }
                let min = u32::from_ne_bytes([p[224], p[225], p[226], p[227]]);
                let max = u32::from_ne_bytes([p[228], p[229], p[230], p[231]]);
                let attrs = Attrs::parse(tail(p, wire::USERSPI_INFO_SIZE))?;
                XfrmMsg::AllocSpi { sa: SaMsg { info, attrs }, min, max }
            }
            msg_type::ACQUIRE => XfrmMsg::Acquire {
                acquire: UserAcquire::parse(p)?,
                attrs: Attrs::parse(tail(p, UserAcquire::SIZE))?,
            },
            msg_type::EXPIRE => {
                if p.len() < wire::USER_EXPIRE_SIZE {
                    return Err(DecodeError::Truncated {
                        what: "xfrm_user_expire",
                        need: wire::USER_EXPIRE_SIZE,
                        have: p.len(),
                    });
                }
                let hard = p[UsersaInfo::SIZE] != 0;
                let sa = SaMsg {
                    info: UsersaInfo::parse(p)?,
                    attrs: Attrs::parse(tail(p, wire::USER_EXPIRE_SIZE))?,
                };
                XfrmMsg::Expire { sa, hard }
            }
            msg_type::POLEXPIRE => {
                // struct xfrm_user_polexpire: userpolicy_info, hard, padding (176 bytes).
                let size = UserpolicyInfo::SIZE + 8;
                if p.len() < size {
                    return Err(DecodeError::Truncated {
                        what: "xfrm_user_polexpire",
                        need: size,
                        have: p.len(),
                    });
                }
                let hard = p[UserpolicyInfo::SIZE] != 0;
                let policy =
                    PolicyMsg { info: UserpolicyInfo::parse(p)?, attrs: Attrs::parse(tail(p, size))? };
                XfrmMsg::PolExpire { policy, hard }
            }
            msg_type::NEWAE => {
                XfrmMsg::NewAe { id: AeventId::parse(p)?, attrs: Attrs::parse(tail(p, AeventId::SIZE))? }
            }
            NLMSG_DONE => XfrmMsg::Done,
            NLMSG_ERROR => {
                if p.len() < 4 + NLMSG_HDR {
                    return Err(DecodeError::Truncated {
                        what: "nlmsgerr",
                        need: 4 + NLMSG_HDR,
                        have: p.len(),
                    });
                }
                let errno = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                let request = NlHeader {
                    len: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
                    kind: u16::from_ne_bytes([p[8], p[9]]),
                    flags: u16::from_ne_bytes([p[10], p[11]]),
                    seq: u32::from_ne_bytes([p[12], p[13], p[14], p[15]]),
                    pid: u32::from_ne_bytes([p[16], p[17], p[18], p[19]]),
                };
                XfrmMsg::Error { errno, request }
            }
            kind => XfrmMsg::Other { kind },
        })
    }
}

/// The first `NLMSG_ERROR` with a non-zero errno in a datagram: `(sequence of the request, errno)`.
pub fn first_error(buf: &[u8]) -> Option<(u32, i32)> {
    messages(buf).filter_map(Result::ok).find_map(|(h, p)| match XfrmMsg::decode(h.kind, p) {
        Ok(XfrmMsg::Error { errno, request }) if errno != 0 => Some((request.seq, errno)),
        _ => None,
    })
}

/// Builds netlink messages into a reusable buffer.
#[derive(Debug, Default)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes built so far (one or more messages).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets what was built.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Starts a message; returns its offset for [`Builder::finish`].
    pub fn start(&mut self, kind: u16, flags: u16, seq: u32) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        at
    }

    /// The payload is written with `f` (the fixed structure); pads to 4 bytes.
    pub fn fixed(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.buf);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Appends an attribute whose payload `f` writes.
    pub fn attr(&mut self, kind: u16, f: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        f(&mut self.buf);
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Writes the length of the message started at `at`.
    pub fn finish(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Appends a dump request of all SAs (`XFRM_MSG_GETSA`, `NLM_F_DUMP`).
pub fn dump_sas(b: &mut Builder, seq: u32) {
    // No payload: the kernel reads optional filter attributes right after the header.
    let at = b.start(msg_type::GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.finish(at);
}

/// Appends a dump request of all policies (`XFRM_MSG_GETPOLICY`, `NLM_F_DUMP`).
pub fn dump_policies(b: &mut Builder, seq: u32) {
    let at = b.start(msg_type::GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.finish(at);
}

/// What names an SA to the kernel in feedback messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaRef {
    /// Destination, SPI, protocol.
    pub id: UsersaId,
    /// Source address.
    pub saddr: [u8; 16],
    /// Request id.
    pub reqid: u32,
    /// Mark (the kernel's SA lookup needs it for marked SAs).
    pub mark: Option<Mark>,
}

/// The replay state a `NEWAE` reports, in the shape of the kernel SA it names: the kernel
/// takes `XFRMA_REPLAY_ESN_VAL` only for an SA that has one, with the same bitmap length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayValue {
    /// `XFRMA_REPLAY_VAL` (`struct xfrm_replay_state`).
    Legacy(ReplayState),
    /// `XFRMA_REPLAY_ESN_VAL` (`struct xfrm_replay_state_esn`, sent with a zero bitmap of
    /// `bmp_len` words).
    Esn(ReplayStateEsn),
}

/// Appends an `XFRM_MSG_NEWAE` with `NLM_F_REPLACE` carrying the SA's cumulative counters
/// (`XFRMA_LTIME_VAL`): the kernel copies them into its SA, where the IKE daemon reads them
/// (always totals, never increments). With `replay`, also the SA's sequence numbers
/// (`XFRM_AE_RVAL`): the last sent (outbound) or highest received (inbound), which a data plane
/// restarted under the same SAs reads back from the kernel's dump. `ack` asks for an
/// `NLMSG_ERROR` acknowledgement.
pub fn newae(
    b: &mut Builder,
    seq: u32,
    sa: &SaRef,
    cur: &LifetimeCur,
    replay: Option<&ReplayValue>,
    ack: bool,
) {
    let flags = NLM_F_REQUEST | NLM_F_REPLACE | if ack { NLM_F_ACK } else { 0 };
    let at = b.start(msg_type::NEWAE, flags, seq);
    let ae = wire::AE_LVAL | if replay.is_some() { wire::AE_RVAL } else { 0 };
    b.fixed(|o| AeventId { sa_id: sa.id, saddr: sa.saddr, flags: ae, reqid: sa.reqid }.write(o));
    b.attr(attr::LTIME_VAL, |o| cur.write(o));
    match replay {
        Some(ReplayValue::Legacy(r)) => b.attr(attr::REPLAY_VAL, |o| r.write(o)),
        Some(ReplayValue::Esn(r)) => b.attr(attr::REPLAY_ESN_VAL, |o| r.write(o)),
        None => {}
    }
    if let Some(m) = sa.mark {
        b.attr(attr::MARK, |o| m.write(o));
    }
    b.finish(at);
}

/// Appends an `XFRM_MSG_EXPIRE` for an SA that reached a limit in the data plane: the kernel
/// tells the IKE daemon (soft: rekey; hard: the kernel also deletes the SA).
pub fn expire(b: &mut Builder, seq: u32, sa: &SaRef, hard: bool, ack: bool) {
    let flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
    let at = b.start(msg_type::EXPIRE, flags, seq);
    b.fixed(|o| {
        let info = UsersaInfo {
            id: wire::XfrmId { daddr: sa.id.daddr, spi: sa.id.spi, proto: sa.id.proto },
            saddr: sa.saddr,
            family: sa.id.family,
            reqid: sa.reqid,
            ..UsersaInfo::default()
        };
        info.write(o);
        // `hard` and the padding of struct xfrm_user_expire to 8 bytes (232 in all).
        o.push(hard as u8);
        o.extend_from_slice(&[0; 7]);
    });
    if let Some(m) = sa.mark {
        b.attr(attr::MARK, |o| m.write(o));
    }
    b.finish(at);
}

/// Appends an `XFRM_MSG_ACQUIRE` for an outbound policy that has no SA: the kernel relays it to
/// the IKE daemon (`km_query`), which negotiates one. `flow` is the packet's selector (the
/// policy's own when `None`).
pub fn acquire(b: &mut Builder, seq: u32, policy: &PolicyMsg, flow: Option<wire::XfrmSelector>, ack: bool) {
    acquire_pcpu(b, seq, policy, flow, None, ack)
}

/// [`acquire`] of a per-CPU SA (RFC 9611) when `pcpu` is given: the request names the CPU in
/// `XFRMA_SA_PCPU`, as the kernel's own ACQUIREs for a `XFRM_POLICY_CPU_ACQUIRE` policy do, so
/// the daemon negotiates an SA for that CPU (the kernel refuses a CPU number it does not have).
pub fn acquire_pcpu(
    b: &mut Builder,
    seq: u32,
    policy: &PolicyMsg,
    flow: Option<wire::XfrmSelector>,
    pcpu: Option<u32>,
    ack: bool,
) {
    let flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
    let at = b.start(msg_type::ACQUIRE, flags, seq);
    let t = policy.attrs.templates.first().copied().unwrap_or_default();
    b.fixed(|o| {
        UserAcquire {
            id: t.id,
            saddr: t.saddr,
            sel: flow.unwrap_or(policy.info.sel),
            policy: policy.info,
            aalgos: t.aalgos,
            ealgos: t.ealgos,
            calgos: t.calgos,
            seq: 0,
        }
        .write(o)
    });
    if !policy.attrs.templates.is_empty() {
        b.attr(attr::TMPL, |o| policy.attrs.templates.iter().for_each(|t| t.write(o)));
    }
    if let Some(m) = policy.attrs.mark {
        b.attr(attr::MARK, |o| m.write(o));
    }
    if let Some(id) = policy.attrs.if_id {
        b.attr(attr::IF_ID, |o| o.extend_from_slice(&id.to_ne_bytes()));
    }
    if let Some(cpu) = pcpu {
        b.attr(attr::SA_PCPU, |o| o.extend_from_slice(&cpu.to_ne_bytes()));
    }
    b.finish(at);
}
