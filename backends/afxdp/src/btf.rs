//! Just enough of BTF (the kernel's BPF Type Format, `/sys/kernel/btf/vmlinux`) to find a
//! kernel function's type id — what a kfunc call instruction names the function by.
//!
//! Layout (`include/uapi/linux/btf.h`): a header (`magic 0xeb9f`, version, flags, `hdr_len`,
//! then the type and string sections' offsets and lengths, relative to the header's end), a
//! type section of variable-size records (12 bytes of `name_off`, `info`, `size/type`, then
//! kind-specific data) numbered from 1, and a string section. Parsed once, when a port opens.
//! Written here rather than taken from a BTF crate: the one lookup needs ~60 lines, and the
//! crate keeps its "Rust and libc only" promise.

use std::io;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("vmlinux BTF: {why}"))
}

/// Bytes of kind-specific data after a type record of `kind` with `vlen` members.
fn extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION
        6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO
        15 | 19 => 12 * vlen,      // DATASEC, ENUM64
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        _ => return None,
    })
}

/// The type id of the function `name` in the BTF blob `btf` (native byte order, as the running
/// kernel exports it).
pub(crate) fn func_id(btf: &[u8], name: &str) -> io::Result<u32> {
    let u16_at = |o: usize| btf.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| btf.get(o..o + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if u16_at(0) != Some(BTF_MAGIC) {
        return Err(bad("no BTF magic"));
    }
    let field = |o| u32_at(o).map(|v| v as usize).ok_or_else(|| bad("truncated header"));
    let hdr = field(4)?;
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    let types = btf.get(hdr + type_off..hdr + type_off + type_len).ok_or_else(|| bad("type section"))?;
    let strings = btf.get(hdr + str_off..hdr + str_off + str_len).ok_or_else(|| bad("string section"))?;
    let name_at = |off: usize| {
        let s = strings.get(off..)?;
        let end = s.iter().position(|&b| b == 0)?;
        Some(&s[..end])
    };
    let word = |o: usize| types.get(o..o + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let mut at = 0;
    let mut id = 1u32;
    while at < types.len() {
        let (Some(name_off), Some(info)) = (word(at), word(at + 4)) else {
            return Err(bad("truncated type record"));
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        if kind == KIND_FUNC && name_at(name_off as usize) == Some(name.as_bytes()) {
            return Ok(id);
        }
        at += 12 + extra(kind, vlen).ok_or_else(|| bad("unknown type kind"))?;
        id += 1;
    }
    Err(io::Error::new(io::ErrorKind::NotFound, format!("vmlinux BTF has no function {name}")))
}

/// The type id of kernel function `name` in the running kernel's BTF.
pub(crate) fn vmlinux_func_id(name: &str) -> io::Result<u32> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux")?;
    func_id(&btf, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob of: 1 INT "int", 2 FUNC_PROTO (one param), 3 FUNC "f" → 2, 4 FUNC "g" → 2.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0f\0g\0";
        let mut types = Vec::new();
        let mut rec = |name: u32, kind: u32, vlen: u32, sz: u32, extra: &[u32]| {
            for w in [name, (kind << 24) | vlen, sz].iter().chain(extra) {
                types.extend_from_slice(&w.to_ne_bytes());
            }
        };
        rec(1, 1, 0, 4, &[32]);
        rec(0, 13, 1, 1, &[0, 1]);
        rec(5, 12, 0, 2, &[]);
        rec(7, 12, 0, 2, &[]);
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn finds_functions_by_name_and_refuses_garbage() {
        let b = blob();
        assert_eq!(func_id(&b, "g").unwrap(), 4);
        assert_eq!(func_id(&b, "f").unwrap(), 3);
        assert_eq!(func_id(&b, "int").unwrap_err().kind(), io::ErrorKind::NotFound, "INT is no function");
        assert_eq!(func_id(&b[..30], "g").unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(func_id(&[0u8; 8], "g").unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_running_kernel_names_its_rx_hash_kfunc_when_it_has_btf() {
        match vmlinux_func_id("bpf_xdp_metadata_rx_hash") {
            Ok(id) => assert!(id > 0),
            // No BTF in this kernel (CONFIG_DEBUG_INFO_BTF off) or no such kfunc (before 6.3).
            Err(e) => assert!(matches!(e.kind(), io::ErrorKind::NotFound), "{e}"),
        }
    }
}
