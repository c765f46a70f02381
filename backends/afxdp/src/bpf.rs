//! The `bpf()` system call, for the four commands the backend needs: create the XSKMAP, put a
//! socket in it, load the program, and attach it to an interface as a `bpf_link`.
//!
//! `union bpf_attr` is built as a zeroed 128-byte block with fields written at their offsets
//! from `include/uapi/linux/bpf.h`; the kernel requires every byte it does not know to be zero,
//! which the zeroed block guarantees.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_XSKMAP`.
const MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_F_XDP_HAS_FRAGS` program flag (5.18+): the program handles multi-buffer frames.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// `BPF_F_XDP_DEV_BOUND_ONLY` (6.3+): bound to one device, so it may call the driver's XDP
/// metadata kfuncs; attachable in driver mode on that device only.
const BPF_F_XDP_DEV_BOUND_ONLY: u32 = 1 << 6;
/// `BPF_XDP` attach type.
const ATTACH_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, after the driver built an skb.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver's receive path.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[derive(Default)]
struct Attr([u64; 16]);

impl Attr {
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        let i = off / 8;
        let shift = (off % 8) * 8;
        // Little- or big-endian, a u32 at byte `off` is these bits of the native u64 at `off/8`.
        let shift = if cfg!(target_endian = "little") { shift } else { 32 - shift };
        self.0[i] = (self.0[i] & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
        self
    }

    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        debug_assert_eq!(off % 8, 0);
        self.0[off / 8] = v;
        self
    }

    fn name(&mut self, off: usize, name: &str) -> &mut Self {
        let mut bytes = [0u8; 16];
        for (d, s) in bytes.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        for (k, chunk) in bytes.chunks(4).enumerate() {
            let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.u32(off + 4 * k, v);
        }
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded 128-byte `union bpf_attr` for `cmd`; pointers
    // inside it (keys, instructions, log buffer) are kept alive by the caller for the call.
    let r =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), std::mem::size_of::<Attr>() as u32) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful bpf() call that creates a new fd.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// Creates an XSKMAP of `entries` slots (queue index → AF_XDP socket).
pub(crate) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::default();
    a.u32(0, MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, entries).name(28, "ws_xsks");
    bpf(BPF_MAP_CREATE, &mut a).map(owned)
}

/// Puts socket `xsk_fd` into slot `key` of `map`.
pub(crate) fn xskmap_set(map: &OwnedFd, key: u32, xsk_fd: i32) -> io::Result<()> {
    let value = xsk_fd as u32;
    let mut a = Attr::default();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &value as *const u32 as u64)
        .u64(24, 0);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Empties slot `key` of `map`.
pub(crate) fn xskmap_clear(map: &OwnedFd, key: u32) -> io::Result<()> {
    let mut a = Attr::default();
    a.u32(0, map.as_raw_fd() as u32).u64(8, &key as *const u32 as u64);
    bpf(BPF_MAP_DELETE_ELEM, &mut a).map(drop)
}

/// Loads an XDP program; on a verifier rejection the error carries the verifier's log. `frags`
/// declares that it handles multi-buffer frames (`BPF_F_XDP_HAS_FRAGS`): it then sees only the
/// first buffer through `data`/`data_end`, which holds every header it reads. `dev_bound`
/// binds it to that interface (`BPF_F_XDP_DEV_BOUND_ONLY`), which the metadata kfuncs need.
pub(crate) fn load_xdp(
    insns: &[u64],
    name: &str,
    frags: bool,
    dev_bound: Option<u32>,
) -> io::Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 64 * 1024];
    let attempt = |log_level: u32, log: &mut [u8]| {
        let mut a = Attr::default();
        a.u32(0, PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, log_level)
            .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
            .u64(32, if log_level > 0 { log.as_mut_ptr() as u64 } else { 0 })
            .u32(
                44,
                if frags { BPF_F_XDP_HAS_FRAGS } else { 0 }
                    | if dev_bound.is_some() { BPF_F_XDP_DEV_BOUND_ONLY } else { 0 },
            )
            .name(48, name)
            .u32(64, dev_bound.unwrap_or(0))
            .u32(68, ATTACH_XDP);
        bpf(BPF_PROG_LOAD, &mut a).map(owned)
    };
    match attempt(0, &mut log) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            // Load again with the verifier log switched on, to say why.
            let _ = attempt(1, &mut log);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(first.kind(), format!("{first}; verifier log: {}", text.trim())))
        }
    }
}

/// Attaches program `prog` to interface `ifindex` in the mode `flags` names, as a `bpf_link`:
/// the program stays attached while the returned fd is open, and the kernel detaches it when the
/// last reference closes — on drop, on a panic's unwinding, or when the process dies.
pub(crate) fn link_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::default();
    a.u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, ATTACH_XDP).u32(12, flags);
    bpf(BPF_LINK_CREATE, &mut a).map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_fields_land_at_their_byte_offsets() {
        let mut a = Attr::default();
        a.u32(0, 0x11223344).u32(4, 0x55667788).u32(12, 7).u64(16, 0xaabb).name(28, "abc");
        let mut bytes = Vec::new();
        for w in a.0 {
            bytes.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(&bytes[0..4], &0x11223344u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &0x55667788u32.to_ne_bytes());
        assert_eq!(&bytes[12..16], &7u32.to_ne_bytes());
        assert_eq!(&bytes[16..24], &0xaabbu64.to_ne_bytes());
        assert_eq!(&bytes[28..32], b"abc\0");
        assert!(bytes[32..].iter().all(|&b| b == 0));
    }
}
