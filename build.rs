//! Build script. It owns one link setting: the `ponder` binary and `libponder.so` are linked
//! with packed relative relocations (DT_RELR, `-z pack-relative-relocs`) where the toolchain
//! and the C library take them. A position-independent Rust binary carries one 24-byte
//! relocation per pointer in its read-only tables (vtables, string tables): 5.8 MB of
//! `.rela.dyn` in `ponder`, which DT_RELR packs into 54 KB.
//!
//! DT_RELR needs GNU ld 2.38 or lld 15 to write it and glibc 2.36 to load it. Rather than guess
//! from versions, a tiny C program is linked with the flag by the same linker and run: the flag
//! is used only when that links with no warning and runs. Elsewhere (older toolchains, musl,
//! macOS, Windows, cross builds) nothing changes.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let host_build = var("TARGET") == var("HOST");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && host_build && relr_links() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        println!("cargo:rustc-link-arg-cdylib=-Wl,-z,pack-relative-relocs");
    }
}

/// Links and runs a C program with `-z pack-relative-relocs`; true when both work cleanly.
fn relr_links() -> bool {
    let Ok(out_dir) = std::env::var("OUT_DIR") else { return false };
    let dir = PathBuf::from(out_dir);
    let src = dir.join("relr-probe.c");
    let exe = dir.join("relr-probe");
    // A pointer in a writable table gives the program a relative relocation to pack.
    let program = "static const char *names[] = {\"a\", \"b\"};\nint main(void) { return names[1][0] == 'b' ? 0 : 1; }\n";
    if std::fs::write(&src, program).is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(&linker)
        .args(["-fPIE", "-pie", "-Wl,--fatal-warnings", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    let ok = matches!(linked, Ok(o) if o.status.success() && o.stderr.is_empty())
        && matches!(Command::new(&exe).status(), Ok(s) if s.success());
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&exe);
    ok
}
