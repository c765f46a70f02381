//! NUMA and IRQ placement: run the shards that own a NIC's queues on cores of the NIC's NUMA
//! node, and steer each queue's interrupt to the core of the shard that polls it.
//!
//! Everything is read from and written to sysfs/procfs: the node from
//! `/sys/class/net/IF/device/numa_node`, its cores from `/sys/devices/system/node/nodeN/cpulist`,
//! the queue interrupts from `/proc/interrupts` (lines naming the interface or its PCI address;
//! the MSI vectors in `/sys/class/net/IF/device/msi_irqs` bound the set), and affinity goes to
//! `/proc/irq/N/smp_affinity_list`. What cannot be done — a virtual interface without a device,
//! an IRQ the kernel manages itself — is reported as a mismatch, never an error.

use std::collections::BTreeSet;
use std::path::Path;

/// One queue's interrupt and where it was pointed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqPlacement {
    /// Queue index.
    pub queue: u16,
    /// IRQ number.
    pub irq: u32,
    /// Core the queue's shard runs on.
    pub core: usize,
    /// `Ok` when the affinity was written, else why not.
    pub applied: Result<(), String>,
}

/// Where a port's shards should run and what happened to its interrupts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementReport {
    /// Interface.
    pub interface: String,
    /// The NIC's NUMA node, when it has one.
    pub numa_node: Option<usize>,
    /// Core for the shard of queue `i`, in queue order.
    pub shard_cores: Vec<usize>,
    /// Interrupt placement, per queue found.
    pub irqs: Vec<IrqPlacement>,
    /// Everything that could not be placed as wished, in words.
    pub mismatches: Vec<String>,
}

impl std::fmt::Display for PlacementReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: NUMA node {:?}, shard cores {:?}", self.interface, self.numa_node, self.shard_cores)?;
        for i in &self.irqs {
            match &i.applied {
                Ok(()) => write!(f, "; irq {} (queue {}) -> core {}", i.irq, i.queue, i.core)?,
                Err(e) => write!(f, "; irq {} (queue {}) not moved: {e}", i.irq, i.queue)?,
            }
        }
        for m in &self.mismatches {
            write!(f, "; mismatch: {m}")?;
        }
        Ok(())
    }
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpulist(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Queue interrupts of a device from the text of `/proc/interrupts`: lines whose name mentions
/// `interface` or `pci` (mlx5 names its vectors by PCI address), taking the last number in the
/// name as the queue (`ens1f0-TxRx-3`, `mlx5_comp3@pci:0000:3b:00.0`, `i40e-ens1f0-TxRx-3`).
/// Control vectors (`async`, `ctrl`, `fw`, `mbx`) are skipped. Sorted by queue.
pub fn queue_irqs(proc_interrupts: &str, interface: &str, pci: Option<&str>) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    for line in proc_interrupts.lines() {
        let Some((irq, rest)) = line.trim_start().split_once(':') else { continue };
        let Ok(irq) = irq.trim().parse::<u32>() else { continue };
        let Some(name) = rest.split_whitespace().last() else { continue };
        let ours = name.contains(interface) || pci.is_some_and(|p| name.contains(p));
        if !ours || ["async", "ctrl", "fw", "mbx"].iter().any(|w| name.contains(w)) {
            continue;
        }
        // The queue number: digits right before `@` (mlx5) or at the end of the name.
        let stem = name.split('@').next().unwrap_or(name);
        let digits: String = stem.chars().rev().take_while(char::is_ascii_digit).collect();
        let Ok(q) = digits.chars().rev().collect::<String>().parse::<u16>() else { continue };
        out.push((q, irq));
    }
    out.sort_unstable();
    out
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// CPUs the process may run on (the cores shards can be placed on).
fn allowed_cpus() -> Vec<usize> {
    let status = read("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpulist)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect())
}

/// Chooses cores for the shards of `queues` queues of `interface` and, when `set_irqs`, points
/// each queue's interrupt at its shard's core. Reports every mismatch it could not fix.
pub fn place(interface: &str, queues: u16, set_irqs: bool) -> PlacementReport {
    let mut r = PlacementReport { interface: interface.into(), ..PlacementReport::default() };
    let dev = format!("/sys/class/net/{interface}/device");
    let allowed = allowed_cpus();
    let has_device = Path::new(&dev).exists();
    let mut cores = allowed.clone();
    if !has_device {
        r.mismatches.push(format!(
            "{interface} has no device (a virtual interface such as veth): no NUMA node and no IRQs to place"
        ));
    } else {
        match read(format!("{dev}/numa_node")).and_then(|s| s.parse::<i64>().ok()) {
            Some(n) if n >= 0 => {
                let node = n as usize;
                r.numa_node = Some(node);
                let local: BTreeSet<usize> = read(format!("/sys/devices/system/node/node{node}/cpulist"))
                    .map(|s| parse_cpulist(&s))
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let usable: Vec<usize> = allowed.iter().copied().filter(|c| local.contains(c)).collect();
                if usable.is_empty() {
                    r.mismatches.push(format!("no allowed core on NUMA node {node}: shards run off-node"));
                } else {
                    cores = usable;
                }
            }
            _ => r
                .mismatches
                .push(format!("{interface}: the kernel reports no NUMA node (single-node machine)")),
        }
    }
    if (queues as usize) > cores.len() {
        r.mismatches.push(format!("{queues} queues share {} cores", cores.len()));
    }
    r.shard_cores = (0..queues as usize).map(|q| cores[q % cores.len().max(1)]).collect();
    if !has_device {
        return r;
    }
    let pci =
        std::fs::read_link(&dev).ok().and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let msi: BTreeSet<u32> = std::fs::read_dir(format!("{dev}/msi_irqs"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let table = read("/proc/interrupts").unwrap_or_default();
    let found: Vec<(u16, u32)> = queue_irqs(&table, interface, pci.as_deref())
        .into_iter()
        .filter(|(_, irq)| msi.is_empty() || msi.contains(irq))
        .collect();
    if found.is_empty() {
        r.mismatches.push(format!("no queue interrupts of {interface} found in /proc/interrupts"));
    }
    for q in 0..queues {
        let Some(&(_, irq)) = found.iter().find(|(fq, _)| *fq == q) else {
            if !found.is_empty() {
                r.mismatches.push(format!("queue {q}: no interrupt found"));
            }
            continue;
        };
        let core = r.shard_cores[q as usize];
        let applied = if set_irqs {
            std::fs::write(format!("/proc/irq/{irq}/smp_affinity_list"), core.to_string())
                .map_err(|e| format!("writing /proc/irq/{irq}/smp_affinity_list: {e} (managed IRQ?)"))
        } else {
            Err("not asked to move interrupts".into())
        };
        if let Err(e) = &applied {
            r.mismatches.push(format!("queue {q} irq {irq}: {e}"));
        }
        r.irqs.push(IrqPlacement { queue: q, irq, core, applied });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists_parse() {
        assert_eq!(parse_cpulist("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpulist(""), Vec::<usize>::new());
    }

    #[test]
    fn queue_interrupts_are_found_by_name_or_pci_address() {
        let table = "           CPU0       CPU1\n\
  24:          0          0  PCI-MSI 1572864-edge      ens1f0-TxRx-1\n\
  23:          0          0  PCI-MSI 1572864-edge      ens1f0-TxRx-0\n\
  22:          5          0  PCI-MSI 1572864-edge      i40e-0000:3b:00.0:misc\n\
  40:          1          0  IR-PCI-MSI 524288-edge      mlx5_async0@pci:0000:5e:00.0\n\
  41:          1          0  IR-PCI-MSI 524289-edge      mlx5_comp0@pci:0000:5e:00.0\n\
  42:          1          0  IR-PCI-MSI 524290-edge      mlx5_comp1@pci:0000:5e:00.0\n\
 NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(queue_irqs(table, "ens1f0", None), vec![(0, 23), (1, 24)]);
        assert_eq!(queue_irqs(table, "ens2f0np0", Some("0000:5e:00.0")), vec![(0, 41), (1, 42)]);
        assert!(queue_irqs(table, "veth0", None).is_empty());
    }
}
