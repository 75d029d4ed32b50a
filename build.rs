//! Compiles the thin C shim over DPDK's inline mbuf/mempool API against the
//! installed DPDK headers, and tells rustc which DPDK libraries provide the
//! symbols the crate imports (needed when the rlib is linked into tests).
//!
//! The installed DPDK decides the EAL services the crate calls (`cfg
//! dpdk_eal_23_11`: `rte_thread_create_control` and a separate librte_log
//! from DPDK 23.11 on, `rte_ctrl_thread_create` before); the ABI feature
//! decides what the library exports. meson pairs the two (`-Dabi` fails at
//! configure time on another DPDK release); `cargo test --features
//! abi-24-11` on an older DPDK tests that ABI's behaviour over the EAL it has.
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .expect("pkg-config is required (apt-get install pkg-config libdpdk-dev)");
    assert!(out.status.success(), "pkg-config libdpdk failed: is libdpdk-dev (DPDK 22.11) installed?");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

/// `(major, minor)` of the DPDK `pkg-config` finds.
fn dpdk_version() -> (u32, u32) {
    let version = pkg_config(&["--modversion"]).concat();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(dpdk_eal_23_11)");
    let dpdk = dpdk_version();
    let eal_23_11 = dpdk >= (23, 11);
    if eal_23_11 {
        println!("cargo:rustc-cfg=dpdk_eal_23_11");
    }
    println!("cargo:rerun-if-changed=src/dpdk/shim.c");
    println!("cargo:rerun-if-changed=src/dpdk/crypto_shim.c");
    println!("cargo:rerun-if-changed=src/guest/guest_copy.c");
    cc::Build::new()
        .file("src/guest/guest_copy.c")
        .opt_level(3)
        .flag("-fno-plt")
        .warnings(true)
        .compile("rvhost_guest_copy");
    let cflags = pkg_config(&["--cflags"]);
    let mut build = cc::Build::new();
    build
        .file("src/dpdk/shim.c")
        .file("src/dpdk/crypto_shim.c")
        .opt_level(3)
        .warnings(true)
        .define("ALLOW_EXPERIMENTAL_API", None);
    let mut it = cflags.iter();
    while let Some(flag) = it.next() {
        if flag == "-include" {
            if let Some(header) = it.next() {
                build.flag("-include").flag(header);
            }
        } else {
            build.flag(flag);
        }
    }
    build.compile("rvhost_dpdk_shim");
    for lib in ["rte_cryptodev", "rte_dmadev", "rte_net", "rte_mbuf", "rte_mempool", "rte_eal"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    if eal_23_11 {
        println!("cargo:rustc-link-lib=dylib=rte_log");
    }
}
