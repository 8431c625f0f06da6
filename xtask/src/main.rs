//! `cargo xtask <task>`: the one entry point for CI, benchmarks, interop and fuzzing.
//!
//! - `ci`: rustfmt check, clippy (warnings denied), rustdoc (warnings denied), a check with the
//!   declared `rust-version` toolchain, `cargo deny check`, every test, the instruction-count
//!   gate, a fuzz smoke run.
//! - `test`: every test of the workspace (no lint, no fuzz).
//! - `bench [srtp|dtls|sfu|signaling|all] [--save <label>] [--against <label>] [-- <criterion
//!   args>]`: criterion benchmarks (HTML reports with plots), a table of medians, throughput
//!   and, against a saved baseline, the change and criterion's verdict per row.
//! - `profile srtp|dtls|sfu [--seconds N] [-- <filter>]`: pprof flamegraphs (SVG) of the hot
//!   benchmarks.
//! - `instructions`: callgrind instruction counts against `benches/instructions.baseline`
//!   (also a step of `ci`); `bench-baseline` rewrites that file.
//! - `doc`, `msrv`, `deny`: those steps of `ci` alone.
//! - `interop`: the tests that drive real peers (libsrtp2, webrtc-*, OpenSSL, Chromium).
//! - `fuzz [seconds]`: every cargo-fuzz target for `seconds` (default 20) each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod instructions;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "ci" => ci(),
        "test" => test(),
        "bench" => {
            // `bench [name] [options]`: the name defaults to srtp.
            let (which, opts) = match rest.first() {
                Some(w) if !w.starts_with('-') => (w.as_str(), &rest[1..]),
                _ => ("srtp", rest),
            };
            match which {
                "signaling" => signaling_load(),
                _ => bench::BenchArgs::parse(opts)
                    .and_then(|a| bench::bench(which, &a))
                    .and_then(|()| match which {
                        "sfu" => sfu_load(),
                        "all" => sfu_load().and_then(|()| signaling_load()),
                        _ => Ok(()),
                    }),
            }
        }
        "profile" => match rest.first() {
            Some(which) => bench::profile(which, &rest[1..]),
            None => Err("profile what? srtp|dtls|sfu".into()),
        },
        "doc" => doc(),
        "msrv" => msrv(),
        "deny" => deny(),
        "instructions" => instructions::check(),
        "bench-baseline" => instructions::rewrite(),
        "interop" => interop(),
        "fuzz" => fuzz(rest.first().and_then(|s| s.parse().ok()).unwrap_or(20)),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | test | interop | fuzz [seconds]\n\
                 \x20 | bench [srtp|dtls|sfu|signaling|all] [--save <label>] [--against <label>] [-- <criterion args>]\n\
                 \x20 | profile srtp|dtls|sfu [--seconds N] [-- <filter>]\n\
                 \x20 | doc | msrv | deny | instructions | bench-baseline>"
            );
            Err("unknown task".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result = std::result::Result<(), String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where cargo builds (honours `CARGO_TARGET_DIR` and cargo's configuration).
fn target_dir() -> std::result::Result<PathBuf, String> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata: no target_directory".into())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(what: &str, mut cmd: Command) -> Result {
    let start = Instant::now();
    eprintln!("\n==> {what}");
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    eprintln!("<== {what}: {status} in {:.0?}", start.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn ci() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("rustfmt", fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("clippy", clippy)?;
    doc()?;
    msrv()?;
    deny()?;
    test()?;
    instructions::check()?;
    fuzz(15)
}

/// `cargo doc --no-deps --workspace` with rustdoc warnings denied.
fn doc() -> Result {
    let mut doc = cargo();
    doc.args(["doc", "--no-deps", "--workspace"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("rustdoc (warnings denied)", doc)
}

/// The toolchain of the workspace's `rust-version` (Cargo.toml), which must therefore stay
/// honest: `cargo +<rust-version>.0 check --workspace --all-targets`.
fn msrv() -> Result {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))
        .map_err(|e| format!("Cargo.toml: {e}"))?;
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or("Cargo.toml: no rust-version")?;
    let toolchain = if version.matches('.').count() == 1 {
        format!("{version}.0")
    } else {
        version
    };
    // Through rustup's proxy, not `$CARGO` (which is the toolchain running xtask).
    let mut c = Command::new("cargo");
    c.current_dir(root())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .args([
            &format!("+{toolchain}"),
            "check",
            "--workspace",
            "--all-targets",
        ]);
    run(
        &format!("check with the declared rust-version ({toolchain})"),
        c,
    )
}

/// `cargo deny check` (deny.toml): advisories, licences, bans, sources. When
/// `CALLSEC_ADVISORY_DBS` names a prepared database (`.ci/advisory-db.sh` makes one from the
/// offline copy CI keeps), it runs with `--offline` against it (deny.toml's `db-path` reads
/// the variable); otherwise against the live RustSec database.
fn deny() -> Result {
    let offline = std::env::var_os("CALLSEC_ADVISORY_DBS").is_some_and(|d| !d.is_empty());
    if offline {
        // `--offline` covers cargo metadata too, which needs every package of the lock file
        // (all platforms) in cargo's cache: fetch them first (the registry is reachable).
        let mut f = cargo();
        f.args(["fetch", "--locked"]);
        run("cargo fetch (for cargo deny --offline)", f)?;
    }
    let mut c = Command::new("cargo");
    c.current_dir(root()).arg("deny");
    if offline {
        c.arg("--offline");
    }
    c.arg("check");
    run(
        if offline {
            "cargo deny check (offline advisory database)"
        } else {
            "cargo deny check (live advisory database)"
        },
        c,
    )
}

fn test() -> Result {
    let mut t = cargo();
    t.args(["test", "--workspace", "--no-fail-fast"]);
    run("tests", t)?;
    // The workspace runs with the default crypto provider (ring; tests that loop over
    // `Provider::ALL` cover RustCrypto too). Once more, the protocol crates built without
    // ring: RustCrypto as the only provider, the default in every test (two small crates,
    // so this adds little CI time).
    let mut t = cargo();
    t.args([
        "test",
        "--no-fail-fast",
        "-p",
        "callsec-srtp",
        "-p",
        "callsec-dtls",
        "--no-default-features",
    ]);
    run("tests, RustCrypto provider only (srtp, dtls)", t)
}

fn interop() -> Result {
    let mut t = cargo();
    t.args([
        "test",
        "--no-fail-fast",
        "-p",
        "callsec-tests",
        "-p",
        "callsec-interop",
    ]);
    run("interop tests (peers and headless Chromium)", t)
}

/// The calls server on loopback under synthetic load (bounded: three short steps).
fn sfu_load() -> Result {
    let mut c = cargo();
    c.args([
        "run",
        "--release",
        "-p",
        "callsec-server",
        "--example",
        "sfu_load",
    ]);
    run("sfu load test (loopback)", c)
}

fn signaling_load() -> Result {
    let mut c = cargo();
    c.args([
        "run",
        "--release",
        "-p",
        "callsec-signaling",
        "--example",
        "loadtest",
    ]);
    run("signaling load test", c)
}

/// Builds and runs every cargo-fuzz target for `seconds` each. cargo-fuzz needs nightly
/// compiler flags; the machine's nightly toolchain is used when there is one, else stable
/// with `RUSTC_BOOTSTRAP=1`.
fn fuzz(seconds: u64) -> Result {
    let fuzz_dir = root().join("fuzz");
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let fuzz_cmd = || {
        let mut c = Command::new("cargo");
        if nightly {
            c.arg("+nightly");
        } else {
            c.env("RUSTC_BOOTSTRAP", "1");
        }
        c.current_dir(&fuzz_dir).arg("fuzz");
        c
    };
    let list = fuzz_cmd()
        .arg("list")
        .output()
        .map_err(|e| format!("cargo fuzz: {e} (install it: cargo install cargo-fuzz)"))?;
    if !list.status.success() {
        return Err(format!(
            "cargo fuzz list: {}",
            String::from_utf8_lossy(&list.stderr)
        ));
    }
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    if targets.is_empty() {
        return Err("no fuzz targets".into());
    }
    let mut build = fuzz_cmd();
    build.args(["build", "--debug-assertions"]);
    run("fuzz build", build)?;
    for t in &targets {
        let mut r = fuzz_cmd();
        r.args([
            "run",
            "--debug-assertions",
            t,
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
        ]);
        run(&format!("fuzz {t} for {seconds}s"), r)?;
    }
    Ok(())
}
