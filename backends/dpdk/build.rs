//! Links the system DPDK (libdpdk through pkg-config, dynamic) and compiles the C shim.
//!
//! Without DPDK the crate still builds: the shim is left out, `cfg(wirespeed_dpdk_absent)` is
//! set, and every entry point returns `DpdkError::NotInstalled` (so tests can say why they skip).
//! `WIRESPEED_DPDK_ABSENT=1` forces that build even where DPDK is installed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wirespeed_dpdk_absent)");
    println!("cargo::rerun-if-changed=shim/shim.c");
    println!("cargo::rerun-if-changed=shim/shim.h");
    println!("cargo::rerun-if-env-changed=WIRESPEED_DPDK_ABSENT");
    let forced_absent = std::env::var_os("WIRESPEED_DPDK_ABSENT").is_some_and(|v| v != "0");
    let lib = if forced_absent {
        Err("WIRESPEED_DPDK_ABSENT is set".to_string())
    } else {
        pkg_config::Config::new().atleast_version("22.11").probe("libdpdk").map_err(|e| e.to_string())
    };
    let lib = match lib {
        Ok(lib) => lib,
        Err(why) => {
            println!(
                "cargo::warning=wirespeed-dpdk: libdpdk (>= 22.11) not found ({why}); building without DPDK, every port will fail with NotInstalled. Install libdpdk-dev and pkg-config."
            );
            println!("cargo::rustc-cfg=wirespeed_dpdk_absent");
            return;
        }
    };
    let mut build = cc::Build::new();
    build.file("shim/shim.c").warnings(true).flag_if_supported("-Wno-unused-parameter");
    // rte_thash_load_v6_addrs (used by the softrss helper) is written with SSSE3 intrinsics.
    build.flag_if_supported("-mssse3").flag_if_supported("-msse4.2");
    for p in &lib.include_paths {
        build.include(p);
    }
    // DPDK's pkg-config cflags include `-include rte_config.h` and `-march=…`; pass the former
    // (the headers need it), and keep our own target flags.
    build.flag("-include").flag("rte_config.h");
    for (k, v) in &lib.defines {
        match v {
            Some(v) => build.define(k, v.as_str()),
            None => build.define(k, None),
        };
    }
    build.compile("wirespeed_dpdk_shim");
}
