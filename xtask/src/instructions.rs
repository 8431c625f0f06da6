//! The instruction-count gate: `benches/benches/instructions.rs` under Valgrind's callgrind
//! (gungraun), compared with the committed `benches/instructions.baseline`.
//!
//! Instruction counts do not drift with the machine's load the way wall-clock time does (the
//! same binary on the same machine counts the same), so this is the one performance check
//! that can fail CI. `cargo xtask bench-baseline` rewrites the baseline; its diff is reviewed
//! like code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::{Result, cargo, root, run, target_dir};

/// How much a count may grow over the baseline before the gate fails, in percent.
const TOLERANCE_PERCENT: f64 = 5.0;
const BASELINE: &str = "benches/instructions.baseline";

/// Runs the counts and fails when one grows more than [`TOLERANCE_PERCENT`] over the
/// baseline, or when the cases and the baseline's entries differ.
pub fn check() -> Result {
    let counts = measure()?;
    let path = root().join(BASELINE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (write it with `cargo xtask bench-baseline`)",
            path.display()
        )
    })?;
    let baseline = parse(&text)?;
    let recorded = text
        .lines()
        .find_map(|l| l.strip_prefix("# measured with "))
        .unwrap_or("?");
    let here = toolchain();
    if recorded != here {
        println!("note: baseline measured with {recorded}; this run: {here}");
    }

    let mut failures = Vec::new();
    println!("\ninstructions (callgrind Ir) against {BASELINE}, fail above +{TOLERANCE_PERCENT}%");
    println!(
        "{:<40}{:>12}{:>12}{:>9}",
        "case", "baseline", "now", "change"
    );
    for (case, &now) in &counts {
        let Some(&base) = baseline.get(case) else {
            println!("{case:<40}{:>12}{now:>12}", "-");
            failures.push(format!("{case}: not in the baseline"));
            continue;
        };
        let change = (now as f64 / base as f64 - 1.0) * 100.0;
        let mark = if change > TOLERANCE_PERCENT {
            failures.push(format!(
                "{case}: {now} instructions, {change:+.2}% over the baseline's {base}"
            ));
            "  REGRESSED"
        } else if change < -TOLERANCE_PERCENT {
            "  improved: consider `cargo xtask bench-baseline`"
        } else {
            ""
        };
        println!("{case:<40}{base:>12}{now:>12}{change:>+8.2}%{mark}");
    }
    for case in baseline.keys().filter(|c| !counts.contains_key(*c)) {
        failures.push(format!("{case}: in the baseline but not measured"));
    }
    if failures.is_empty() {
        println!(
            "{} counts within +{TOLERANCE_PERCENT}% of the baseline",
            counts.len()
        );
        Ok(())
    } else {
        Err(format!(
            "instruction counts:\n  {}\n(if the change is meant, rewrite the baseline with \
             `cargo xtask bench-baseline` and commit it)",
            failures.join("\n  ")
        ))
    }
}

/// `cargo xtask bench-baseline`: measures and rewrites the baseline file.
pub fn rewrite() -> Result {
    let counts = measure()?;
    let mut text = format!(
        "# Instructions (callgrind Ir) per case of benches/benches/instructions.rs.\n\
         # `cargo xtask ci` fails when a count grows more than {TOLERANCE_PERCENT}% over this file.\n\
         # Rewritten by `cargo xtask bench-baseline`; review its diff like code.\n\
         # measured with {}\n",
        toolchain()
    );
    let width = counts.keys().map(String::len).max().unwrap_or(0) + 2;
    for (case, n) in &counts {
        text.push_str(&format!("{case:<width$}{n}\n"));
    }
    let path = root().join(BASELINE);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {} counts to {}", counts.len(), path.display());
    Ok(())
}

/// Builds and runs the callgrind benchmark (only callsec's crates: `--no-default-features`
/// leaves the criterion rivals out) and reads the count of every case it ran.
fn measure() -> std::result::Result<BTreeMap<String, u64>, String> {
    preflight()?;
    let started = SystemTime::now();
    let mut c = cargo();
    c.args([
        "bench",
        "-p",
        "callsec-benches",
        "--no-default-features",
        "--bench",
        "instructions",
        "--",
        "--save-summary=json",
    ]);
    run("instruction counts (gungraun, callgrind)", c)?;
    let dir = target_dir()?.join("gungraun/callsec-benches/instructions");
    let mut summaries = Vec::new();
    find(&dir, started, &mut summaries);
    let mut counts = BTreeMap::new();
    for s in summaries {
        let text = std::fs::read_to_string(&s).map_err(|e| format!("{}: {e}", s.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", s.display()))?;
        let name = format!(
            "{}/{}.{}",
            v["group"].as_str().unwrap_or("?"),
            v["function_name"].as_str().unwrap_or("?"),
            v["id"].as_str().unwrap_or("?")
        );
        let ir = v["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["tool"] == "Callgrind")
            .and_then(|p| p["data"]["total"]["metrics"]["Ir"]["values"]["new"].as_u64())
            .ok_or_else(|| format!("{}: no callgrind Ir", s.display()))?;
        counts.insert(name, ir);
    }
    if counts.is_empty() {
        return Err(format!(
            "no gungraun summary written under {}",
            dir.display()
        ));
    }
    Ok(counts)
}

/// Valgrind and the gungraun runner of the version the lock file names must be installed.
fn preflight() -> Result {
    if !Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("valgrind not found (apt-get install valgrind; `bash .ci/run` does)".into());
    }
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| e.to_string())?;
    let want = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"gungraun\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .ok_or("gungraun is not in Cargo.lock")?;
    let have = Command::new("gungraun-runner")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match have {
        Some(v) if v.split_whitespace().last() == Some(want.as_str()) => Ok(()),
        other => Err(format!(
            "gungraun-runner {want} is needed (found {}): cargo install --locked gungraun-runner \
             --version {want}",
            other.as_deref().unwrap_or("none")
        )),
    }
}

fn find(dir: &Path, since: SystemTime, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            find(&path, since, out);
        } else if path.file_name().is_some_and(|n| n == "summary.json")
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        {
            out.push(path);
        }
    }
}

/// `case count` lines; `#` starts a comment.
fn parse(text: &str) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (
            parts.next(),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) {
            (Some(case), Some(Ok(count)), None) => {
                out.insert(case.to_owned(), count);
            }
            _ => return Err(format!("{BASELINE}:{}: expected `case count`", n + 1)),
        }
    }
    Ok(out)
}

/// What the counts depend on besides the code: the compiler and valgrind.
fn toolchain() -> String {
    let first_line = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_else(|| format!("{cmd}: ?"))
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    format!(
        "{}, {}, {}",
        first_line(&rustc, "--version"),
        first_line("valgrind", "--version"),
        std::env::consts::ARCH
    )
}
