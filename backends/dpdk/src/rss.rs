//! Hardware RSS of a DPDK port: the 40-byte key, hash types, the RETA (updatable at runtime, for
//! the rebalancer), symmetric hashing, and steering rules compiled to `rte_flow`
//! ([`crate::flow`]).
//!
//! What the NIC does can differ from what was asked; [`RssReport`] says how, and
//! [`HwRss::hasher`] is the software hash of what the NIC really does (key, types, mode), which
//! is what the software dispatcher and the [`crate::HashSelfTest`] must use:
//!
//! * Hash types the PMD does not offer (`flow_type_rss_offloads`) are hashed by the NIC under a
//!   coarser type (ESP as 2-tuple, NAT-T always as UDP: DPDK has no NAT-T-by-SPI type).
//! * Symmetric `xor` uses the PMD's `RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ` (an `rte_flow` RSS
//!   action over the RETA's queues) when `rte_flow_validate` accepts it; otherwise, and for
//!   `or-xor`/`sort` (no DPDK 22.11 hash function), the port falls back to the `6d5a` key
//!   (mode `key`), which is symmetric on every NIC.
//! * A RETA smaller than the device's is replicated to the device's size, which maps every hash
//!   to the same queue (`hash & (len-1)` on a divisor of the device size).

use serde::{Deserialize, Serialize};
use wirespeed_core::rss::{
    Applied, HashTypes, Reta, RssConfig, RssControl, RssError, RssHasher, SteeringPlan, SymmetricMode,
};

use crate::error::DpdkError;
use crate::ffi::{self, DevInfo, FlowHandle};
use crate::flow::{self, SteeringReport};

/// Key length of PMDs that do not report one (DPDK's default; mlx5 requires exactly this).
pub const DEFAULT_KEY_LEN: usize = 40;

/// RSS settings of a port (configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RssSettings {
    /// Key, symmetric mode and hash types (`key = "ms"`, `mode = "xor"`, `types = ["all"]`).
    pub hash: RssConfig,
    /// RETA size; the device's own size when absent (128 on most NICs, up to 512 on mlx5).
    pub reta_size: Option<usize>,
}

/// How the port makes its hash symmetric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymmetricSupport {
    /// Not asked for (mode `none`).
    NotRequested,
    /// The `6d5a` key was asked for (mode `key`) and is programmed.
    Key,
    /// The PMD's symmetric Toeplitz (`rte_flow` RSS action) implements mode `xor`.
    Pmd,
    /// The mode asked for is not available; the port uses the `6d5a` key (mode `key`) instead.
    KeyFallback {
        /// The mode asked for.
        requested: SymmetricMode,
        /// Why the PMD could not do it.
        why: String,
    },
}

/// What the port's RSS does, against what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssReport {
    /// The configuration asked for.
    pub requested: RssConfig,
    /// What the NIC hashes: the key programmed, the effective mode, the types it hashes.
    pub effective: RssConfig,
    /// How symmetry is done.
    pub symmetric: SymmetricSupport,
    /// Requested types the NIC does not hash as asked (they fall back to a coarser type).
    pub not_in_hardware: HashTypes,
    /// RETA size programmed (0: the device has no RETA).
    pub reta_size: usize,
}

impl std::fmt::Display for RssReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hardware types {:?}, mode {}, RETA {} entries",
            self.effective.types.names(),
            self.effective.mode.name(),
            self.reta_size
        )?;
        if self.not_in_hardware != HashTypes::NONE {
            write!(f, "; not in hardware: {:?}", self.not_in_hardware.names())?;
        }
        match &self.symmetric {
            SymmetricSupport::KeyFallback { requested, why } => {
                write!(f, "; symmetric `{}` unavailable ({why}), using the 6d5a key", requested.name())
            }
            SymmetricSupport::Pmd => write!(f, "; symmetric by the PMD (SYMMETRIC_TOEPLITZ)"),
            _ => Ok(()),
        }
    }
}

/// Hardware RSS of a started [`crate::DpdkPort`]; also its [`RssControl`].
#[derive(Debug)]
pub struct HwRss {
    port: u16,
    device: String,
    queues: u16,
    key_size: usize,
    dev_reta_size: usize,
    report: RssReport,
    reta: Option<Reta>,
    sym_flow: Option<FlowHandle>,
    steering: Vec<FlowHandle>,
    last_steering: Option<SteeringReport>,
}

impl HwRss {
    /// Works out what to program from the settings and the device's capabilities (before
    /// `rte_eth_dev_configure`).
    pub(crate) fn plan(
        port: u16,
        device: &str,
        info: &DevInfo,
        queues: u16,
        s: &RssSettings,
    ) -> Result<HwRss, DpdkError> {
        let req = &s.hash;
        // PMDs that do not say (hash_key_size 0, like the vdevs) take DPDK's default 40 bytes,
        // which is also what mlx5 requires.
        let key_size = match info.hash_key_size {
            0 => DEFAULT_KEY_LEN,
            n => usize::from(n),
        };
        if req.key.len() != key_size {
            return Err(DpdkError::bad(
                "rss.hash.key",
                format!("{} bytes", req.key.len()),
                format!("{device} takes exactly {key_size}-byte keys"),
            ));
        }
        RssHasher::new(req).map_err(|e| DpdkError::bad("rss.hash", format!("{req:?}"), e.to_string()))?;
        let dev_reta_size = usize::from(info.reta_size);
        let reta_size = s.reta_size.unwrap_or(dev_reta_size);
        if dev_reta_size != 0 && (reta_size == 0 || !reta_size.is_power_of_two() || reta_size > dev_reta_size)
        {
            return Err(DpdkError::bad(
                "rss.reta_size",
                reta_size,
                format!("a power of two no larger than {device}'s RETA of {dev_reta_size}"),
            ));
        }
        let supported = types_from_bits(info.flow_type_rss_offloads as u16);
        let hw_types = intersect(req.types, supported);
        let not_in_hardware = difference(req.types, hw_types);
        let (effective_mode, symmetric) = match req.mode {
            SymmetricMode::None => (SymmetricMode::None, SymmetricSupport::NotRequested),
            SymmetricMode::Key => (SymmetricMode::Key, SymmetricSupport::Key),
            // Decided in `start`, once rte_flow can validate on the started port.
            SymmetricMode::Xor => (SymmetricMode::Xor, SymmetricSupport::Pmd),
            m => (
                SymmetricMode::Key,
                SymmetricSupport::KeyFallback {
                    requested: m,
                    why: format!("DPDK 22.11 has no `{}` hash function", m.name()),
                },
            ),
        };
        let mut effective = RssConfig { key: req.key.clone(), mode: effective_mode, types: hw_types };
        effective.key = hw_key(&effective);
        let reta = if dev_reta_size == 0 {
            None
        } else {
            Some(
                Reta::round_robin(reta_size, queues)
                    .map_err(|e| DpdkError::bad("rss.reta_size", reta_size, e.to_string()))?,
            )
        };
        Ok(HwRss {
            port,
            device: device.into(),
            queues,
            key_size,
            dev_reta_size,
            report: RssReport {
                requested: req.clone(),
                effective,
                symmetric,
                not_in_hardware,
                reta_size: if dev_reta_size == 0 { 0 } else { reta_size },
            },
            reta,
            sym_flow: None,
            steering: Vec::new(),
            last_steering: None,
        })
    }

    /// The key to program at configure time.
    pub(crate) fn key(&self) -> &[u8] {
        &self.report.effective.key
    }

    /// Hash types to program, in wirespeed bits.
    pub(crate) fn hw_types_bits(&self) -> u32 {
        u32::from(self.report.effective.types.bits())
    }

    /// After `rte_eth_dev_start`: the RETA, then the PMD's symmetric hash or its fallback.
    pub(crate) fn start(&mut self) -> Result<(), DpdkError> {
        if self.report.effective.types == HashTypes::NONE {
            // No hardware RSS at all (net_ring, net_af_packet): the report says every type is
            // left to software; there is nothing to program.
            return Ok(());
        }
        // Some PMDs (net_null) ignore the key given to rte_eth_dev_configure: program it again.
        let rc = ffi::rss_hash_update(self.port, &self.report.effective.key, self.hw_types_bits());
        if rc != 0 {
            return Err(DpdkError::port(&self.device, "rte_eth_dev_rss_hash_update", rc));
        }
        if let Some(reta) = self.reta.clone() {
            self.program_reta(&reta)
                .map_err(|e| DpdkError::bad("rss.reta_size", reta.len(), e.to_string()))?;
        }
        if self.report.effective.mode == SymmetricMode::Xor {
            match self.symmetric_flow() {
                Ok(f) => self.sym_flow = Some(f),
                Err(why) => {
                    self.report.symmetric =
                        SymmetricSupport::KeyFallback { requested: SymmetricMode::Xor, why };
                    self.report.effective.mode = SymmetricMode::Key;
                    self.report.effective.key = hw_key(&self.report.effective);
                    let rc =
                        ffi::rss_hash_update(self.port, &self.report.effective.key, self.hw_types_bits());
                    if rc != 0 {
                        return Err(DpdkError::port(&self.device, "rte_eth_dev_rss_hash_update", rc));
                    }
                }
            }
        }
        Ok(())
    }

    /// What the port's RSS does against what was asked.
    pub fn report(&self) -> &RssReport {
        &self.report
    }

    /// The software hash equal to the NIC's (effective key, mode and hardware types).
    pub fn hasher(&self) -> Result<RssHasher, RssError> {
        RssHasher::new(&self.report.effective)
    }

    /// The RETA last programmed.
    pub fn reta(&self) -> Option<&Reta> {
        self.reta.as_ref()
    }

    /// Reads the RETA back from the device (device size).
    pub fn query_reta(&self) -> Result<Vec<u16>, DpdkError> {
        ffi::reta_query(self.port, self.dev_reta_size as u16)
            .map_err(|rc| DpdkError::port(&self.device, "rte_eth_dev_rss_reta_query", rc))
    }

    /// Reads the key and DPDK hash-function bits back from the device.
    pub fn query_key(&self) -> Result<(Vec<u8>, u64), DpdkError> {
        ffi::rss_hash_conf(self.port, self.key_size as u8)
            .map_err(|rc| DpdkError::port(&self.device, "rte_eth_dev_rss_hash_conf_get", rc))
    }

    /// The placement report of the last [`RssControl::apply_steering`].
    pub fn steering_report(&self) -> Option<&SteeringReport> {
        self.last_steering.as_ref()
    }

    /// Programs `plan`: each rule into `rte_flow` where the PMD validates it, in order, and the
    /// default group's RETA; returns where each rule runs.
    pub fn apply_steering_report(&mut self, plan: &SteeringPlan) -> Result<SteeringReport, RssError> {
        plan.validate(self.queues)?;
        for f in self.steering.drain(..) {
            let _ = ffi::flow_destroy(self.port, f);
        }
        let (report, flows) = flow::install(self.port, plan, &self.report.effective, self.sym_flow.is_some());
        self.steering = flows;
        if self.dev_reta_size != 0 {
            self.set_reta(&plan.default.reta()?)?;
        }
        self.last_steering = Some(report.clone());
        Ok(report)
    }

    fn program_reta(&mut self, reta: &Reta) -> Result<(), RssError> {
        reta.validate(self.queues)?;
        if self.dev_reta_size == 0 {
            return Err(RssError::Device(format!("{} has no RETA", self.device)));
        }
        let dev = expand_reta(reta, self.dev_reta_size)?;
        let rc = ffi::reta_update(self.port, &dev);
        if rc != 0 {
            return Err(RssError::Device(format!(
                "{}: rte_eth_dev_rss_reta_update: {}",
                self.device,
                ffi::strerror(-rc)
            )));
        }
        self.reta = Some(reta.clone());
        Ok(())
    }

    fn symmetric_flow(&self) -> Result<FlowHandle, String> {
        let entries = match &self.reta {
            Some(r) => expand_reta(r, self.dev_reta_size.max(r.len())).map_err(|e| e.to_string())?,
            None => (0..self.queues).collect(),
        };
        flow::symmetric_rss(self.port, &entries, &self.report.effective)
    }
}

impl RssControl for HwRss {
    fn set_key(&mut self, key: &[u8]) -> Result<(), RssError> {
        if key.len() != self.key_size {
            return Err(RssError::BadKey {
                len: key.len(),
                why: "the device takes keys of exactly its hash_key_size",
            });
        }
        if self.report.effective.mode == SymmetricMode::Key {
            return Err(RssError::BadConfig("symmetric mode `key` fixes the key to 6d5a".into()));
        }
        let next = RssConfig { key: key.to_vec(), ..self.report.effective.clone() };
        RssHasher::new(&next)?;
        let rc = ffi::rss_hash_update(self.port, key, self.hw_types_bits());
        if rc != 0 {
            return Err(RssError::Device(format!(
                "{}: rte_eth_dev_rss_hash_update: {}",
                self.device,
                ffi::strerror(-rc)
            )));
        }
        self.report.effective = next;
        if let Some(f) = self.sym_flow.take() {
            let _ = ffi::flow_destroy(self.port, f);
            self.sym_flow = Some(self.symmetric_flow().map_err(RssError::Device)?);
        }
        Ok(())
    }

    fn set_reta(&mut self, reta: &Reta) -> Result<(), RssError> {
        self.program_reta(reta)?;
        if let Some(f) = self.sym_flow.take() {
            let _ = ffi::flow_destroy(self.port, f);
            self.sym_flow = Some(self.symmetric_flow().map_err(RssError::Device)?);
        }
        Ok(())
    }

    fn apply_steering(&mut self, plan: &SteeringPlan) -> Result<Applied, RssError> {
        Ok(self.apply_steering_report(plan)?.applied())
    }
}

impl Drop for HwRss {
    fn drop(&mut self) {
        for f in self.steering.drain(..).chain(self.sym_flow.take()) {
            let _ = ffi::flow_destroy(self.port, f);
        }
    }
}

/// The key the NIC is given: the `6d5a` key in mode `key`, else the configured one.
fn hw_key(c: &RssConfig) -> Vec<u8> {
    match RssHasher::new(c) {
        Ok(h) => h.key().to_vec(),
        Err(_) => c.key.clone(),
    }
}

/// `reta` replicated to `size` entries (a divisor of `size`): the same queue for every hash.
fn expand_reta(reta: &Reta, size: usize) -> Result<Vec<u16>, RssError> {
    let len = reta.len();
    if len == 0 || !size.is_multiple_of(len) {
        return Err(RssError::BadRetaSize { size: len, max: size });
    }
    Ok((0..size).map(|i| reta.entries()[i % len]).collect())
}

/// The set of the single types whose bits are all in `bits`.
pub(crate) fn types_from_bits(bits: u16) -> HashTypes {
    HashTypes::NAMES
        .iter()
        .filter(|(_, t)| t.bits() & bits == t.bits())
        .fold(HashTypes::NONE, |acc, (_, t)| acc.union(*t))
}

fn intersect(a: HashTypes, b: HashTypes) -> HashTypes {
    types_from_bits(a.bits() & b.bits())
}

fn difference(a: HashTypes, b: HashTypes) -> HashTypes {
    types_from_bits(a.bits() & !b.bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_retas_are_replicated_to_the_same_queue_for_every_hash() {
        let small = Reta::new(vec![0, 1, 2, 3, 3, 2, 1, 0]).unwrap();
        let dev = expand_reta(&small, 128).unwrap();
        for h in (0..4096u32).map(|i| i.wrapping_mul(0x9e37_79b9)) {
            assert_eq!(dev[(h & 127) as usize], small.queue(h));
        }
        assert!(expand_reta(&Reta::round_robin(256, 2).unwrap(), 128).is_err());
    }

    #[test]
    fn hash_type_sets_from_bits() {
        assert_eq!(types_from_bits(HashTypes::ALL.bits()), HashTypes::ALL);
        let v4 = HashTypes::IPV4.union(HashTypes::IPV4_TCP);
        assert_eq!(intersect(HashTypes::ALL, v4), v4);
        assert!(!difference(HashTypes::ALL, v4).contains(HashTypes::IPV4));
        assert!(difference(HashTypes::ALL, v4).contains(HashTypes::IPV6_ESP));
    }
}
