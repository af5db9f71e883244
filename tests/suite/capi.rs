//! The C ABI from outside: compiles `tests/c/capi_smoke.c` against `include/ponder.h` with the
//! system C compiler (`-Wall -Wextra -Werror`), links it to the cdylib that `cargo test
//! --release` builds (in `deps/` beside the `ponder` binary), and runs it (index, search, errors, four
//! threads searching one handle, cancellation, remove). Then runs it again built with
//! AddressSanitizer and LeakSanitizer (see [`leak_check`]); where that cannot run, the leak
//! check is skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::common::{repo, TempDir};

/// The directory holding the cdylib: `deps/` beside the `ponder` binary, where every build of
/// the library writes it (`cargo test` does not copy it up next to the binary, `cargo build`
/// does), else the binary's own directory.
fn lib_dir() -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ponder")).parent().unwrap().to_path_buf();
    let deps = bin_dir.join("deps");
    if deps.join(cdylib_name()).exists() {
        deps
    } else {
        bin_dir
    }
}

fn cdylib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libponder.dylib"
    } else {
        "libponder.so"
    }
}

fn cdylib() -> PathBuf {
    lib_dir().join(cdylib_name())
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Compiles the smoke program with `extra` flags into `out`.
fn compile(out: &Path, extra: &[&str]) -> Output {
    let lib = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .args(extra)
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c/capi_smoke.c"))
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg("-lponder")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-pthread");
    cmd.output().expect("running the C compiler")
}

fn show(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Arguments of one run: fresh index directories under `tmp`.
fn smoke_args(tmp: &Path, tag: &str) -> Vec<PathBuf> {
    let docs = std::fs::canonicalize(repo().join("samples/notes")).unwrap();
    vec![tmp.join(format!("{tag}-index")), docs, tmp.join(format!("{tag}-missing")), tmp.join(format!("{tag}-cancel"))]
}

fn run(prefix: &[&str], bin: &Path, args: &[PathBuf], env: &[(&str, &str)]) -> Output {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    // No GPU probing: the program asks for the CPU, and nothing else should look for adapters.
    cmd.args(args).env("PONDER_NO_GPU", "1").env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running capi_smoke")
}

#[test]
fn c_program_uses_the_library() {
    let lib = cdylib();
    assert!(lib.exists(), "{} is missing: the lib's crate-type must include cdylib", lib.display());
    if Command::new(cc()).arg("--version").output().is_err() {
        panic!("no C compiler ({}) on PATH: the C ABI test needs one", cc());
    }
    let tmp = TempDir::new("capi");
    let bin = tmp.path().join("capi_smoke");
    let o = compile(&bin, &[]);
    assert!(o.status.success(), "{}", show("cc", &o));

    let t = Instant::now();
    let o = run(&[], &bin, &smoke_args(tmp.path(), "plain"), &[]);
    eprintln!("{}", show(&format!("capi_smoke ({:.1}s)", t.elapsed().as_secs_f64()), &o));
    assert!(o.status.success(), "capi_smoke failed");
    assert!(String::from_utf8_lossy(&o.stdout).contains(", 0 failures"));

    leak_check(tmp.path(), &bin);
}

/// Runs the program built with AddressSanitizer's LeakSanitizer (it sees the library's
/// allocations too: they go through the interposed `malloc`; a canary build that leaks on
/// purpose proves it). valgrind needs more than six minutes for this program (the model under
/// emulation), so it is opt-in:
/// `PONDER_LEAK_CHECK=valgrind`. Without a usable sanitizer the check is skipped with the
/// reason printed; `PONDER_LEAK_CHECK=none` skips it.
fn leak_check(tmp: &Path, bin: &Path) {
    match std::env::var("PONDER_LEAK_CHECK").as_deref() {
        Ok("none") => eprintln!("leak check skipped: PONDER_LEAK_CHECK=none"),
        Ok("valgrind") => valgrind(tmp, bin),
        _ => {
            if let Err(why) = lsan(tmp) {
                eprintln!("leak check skipped: {why} (PONDER_LEAK_CHECK=valgrind runs valgrind instead, slowly)");
            }
        }
    }
}

fn valgrind(tmp: &Path, bin: &Path) {
    let t = Instant::now();
    let o = run(
        &[
            "valgrind",
            "--quiet",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            // Only leaks fail the run: valgrind's uninitialised-value tracking misreads some
            // vectorised code in the dependencies.
            "--undef-value-errors=no",
            "--error-exitcode=97",
        ],
        bin,
        &smoke_args(tmp, "valgrind"),
        &[],
    );
    let report = show(&format!("valgrind capi_smoke ({:.1}s)", t.elapsed().as_secs_f64()), &o);
    eprintln!("{report}");
    assert!(o.status.success(), "capi_smoke failed under valgrind (97: leaks or memory errors)");
}

/// `Err` when LeakSanitizer cannot run here; a leak or a memory error fails the test.
fn lsan(tmp: &Path) -> Result<(), String> {
    let bin = tmp.join("capi_smoke_asan");
    let o = compile(&bin, &["-fsanitize=address", "-fno-omit-frame-pointer"]);
    if !o.status.success() {
        return Err(format!("{} cannot build with -fsanitize=address: {}", cc(), String::from_utf8_lossy(&o.stderr).trim()));
    }
    // verify_asan_link_order=0: the runtime need not come first when something is preloaded.
    let asan_options = ("ASAN_OPTIONS", "detect_leaks=1:verify_asan_link_order=0:exitcode=97");
    // The canary leaks on purpose: LeakSanitizer must see it, or this check proves nothing.
    let canary = tmp.join("capi_smoke_canary");
    let o = compile(&canary, &["-fsanitize=address", "-fno-omit-frame-pointer", "-DPONDER_SMOKE_LEAK_CANARY"]);
    assert!(o.status.success(), "{}", show("cc (canary)", &o));
    let o = run(&[], &canary, &smoke_args(tmp, "canary"), &[asan_options]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // LeakSanitizer stops the process with ptrace; some sandboxes and debuggers forbid that.
    if stderr.contains("LeakSanitizer has encountered a fatal error") || stderr.contains("LeakSanitizer does not work") {
        return Err(format!("LeakSanitizer cannot run here: {}", stderr.trim()));
    }
    assert!(
        o.status.code() == Some(97) && stderr.contains("detected memory leaks") && stderr.contains("ponder"),
        "LeakSanitizer missed the canary's leaks in the library:\n{}",
        show("canary", &o)
    );

    let t = Instant::now();
    let o = run(&[], &bin, &smoke_args(tmp, "lsan"), &[asan_options]);
    eprintln!("{}", show(&format!("LeakSanitizer capi_smoke ({:.1}s)", t.elapsed().as_secs_f64()), &o));
    assert!(o.status.success(), "capi_smoke failed under AddressSanitizer (97: leaks or memory errors)");
    Ok(())
}
