//! `cargo xtask <task>`: the one entry point for CI, benchmarks, interop and fuzzing.
//!
//! - `ci`: rustfmt check, clippy (warnings denied), every test, a fuzz smoke run.
//! - `test`: every test of the workspace (no lint, no fuzz).
//! - `bench [srtp|dtls|sfu|signaling|all]`: criterion benchmarks and a table of medians.
//! - `interop`: the tests that drive real peers (libsrtp2, webrtc-*, OpenSSL, Chromium).
//! - `fuzz [seconds]`: every cargo-fuzz target for `seconds` (default 20) each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        "bench" => bench(rest.first().map(String::as_str).unwrap_or("srtp")),
        "interop" => interop(),
        "fuzz" => fuzz(rest.first().and_then(|s| s.parse().ok()).unwrap_or(20)),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | test | bench [srtp|dtls|sfu|signaling|all] | interop | fuzz [seconds]>"
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
    test()?;
    fuzz(15)
}

fn test() -> Result {
    let mut t = cargo();
    t.args(["test", "--workspace", "--no-fail-fast"]);
    run("tests", t)
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

fn bench(which: &str) -> Result {
    let benches: &[&str] = match which {
        "srtp" => &["srtp"],
        "dtls" => &["dtls"],
        "sfu" => &["sfu"],
        "signaling" => return signaling_load(),
        "all" => &["srtp", "dtls", "sfu"],
        other => return Err(format!("unknown benchmark {other}")),
    };
    for b in benches {
        let mut c = cargo();
        c.args(["bench", "-p", "callsec-benches", "--bench", b]);
        run(&format!("criterion bench {b}"), c)?;
        summary(b)?;
    }
    if which == "all" {
        signaling_load()?;
    }
    Ok(())
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

/// Prints the median of every criterion result under the bench's groups, one row per
/// (group, parameter), one column per function id.
fn summary(bench: &str) -> Result {
    let groups: &[&str] = match bench {
        "srtp" => &["srtp-protect", "srtp-unprotect", "srtp-forward"],
        "dtls" => &["dtls-handshake"],
        "sfu" => &["sfu-forward"],
        _ => &[],
    };
    let base = root().join("target/criterion");
    for group in groups {
        let dir = base.join(group);
        let Ok(functions) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut ids: Vec<String> = functions
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir() && e.file_name() != "report")
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort_by_key(|id| (id != "callsec", id == "floor", id.clone()));
        let mut params: Vec<String> = Vec::new();
        for id in &ids {
            for e in std::fs::read_dir(dir.join(id))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().join("new/estimates.json").exists() && !params.contains(&name) {
                    params.push(name);
                }
            }
        }
        params.sort();
        println!("\n{group} (median ns per operation)");
        print!("{:<32}", "parameter");
        for id in &ids {
            print!("{id:>14}");
        }
        println!();
        for p in &params {
            print!("{p:<32}");
            for id in &ids {
                match median_ns(&dir.join(id).join(p).join("new/estimates.json")) {
                    Some(ns) => print!("{ns:>14.1}"),
                    None => print!("{:>14}", "-"),
                }
            }
            println!();
        }
        let ours = ids.iter().find(|i| i.starts_with("callsec"));
        if let (Some(ours), true) = (ours, ids.iter().any(|i| i == "floor")) {
            println!("{ours} / floor:");
            for p in &params {
                let c = median_ns(&dir.join(ours).join(p).join("new/estimates.json"));
                let f = median_ns(&dir.join("floor").join(p).join("new/estimates.json"));
                if let (Some(c), Some(f)) = (c, f) {
                    println!("  {p:<30} {:.2}x", c / f);
                }
            }
        }
    }
    Ok(())
}

fn median_ns(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
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
