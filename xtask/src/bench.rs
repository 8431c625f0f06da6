//! `bench` and `profile`: criterion runs, their summary table (median, throughput, change and
//! criterion's verdict against a baseline) and pprof flamegraphs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use crate::{Result, cargo, root, run, target_dir};

/// What `cargo xtask bench` was asked for besides the benchmark's name.
#[derive(Default)]
pub struct BenchArgs {
    /// `--save <label>`: save this run as criterion baseline `label`.
    pub save: Option<String>,
    /// `--against <label>`: compare this run with the saved baseline `label` (kept as it is).
    pub against: Option<String>,
    /// Anything after `--`, passed to criterion (a filter, `--measurement-time 2`, ...).
    pub criterion: Vec<String>,
}

impl BenchArgs {
    /// Parses `[--save <label>] [--against <label>] [-- <criterion args>]`.
    pub fn parse(args: &[String]) -> std::result::Result<Self, String> {
        let mut out = BenchArgs::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--save" => out.save = Some(label(it.next(), a)?),
                "--against" => out.against = Some(label(it.next(), a)?),
                "--" => out.criterion.extend(it.by_ref().cloned()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(out)
    }
}

fn label(v: Option<&String>, flag: &str) -> std::result::Result<String, String> {
    match v {
        Some(l) if !l.starts_with('-') && !l.is_empty() => Ok(l.clone()),
        _ => Err(format!("{flag} needs a baseline label")),
    }
}

/// The criterion bench targets behind a benchmark name.
fn targets(which: &str) -> std::result::Result<Vec<&'static str>, String> {
    Ok(match which {
        "srtp" => vec!["srtp"],
        "dtls" => vec!["dtls"],
        "sfu" if sfu_exists() => vec!["sfu"],
        "sfu" => return Err(no_sfu()),
        "all" if sfu_exists() => vec!["srtp", "dtls", "sfu"],
        "all" => vec!["srtp", "dtls"],
        other => return Err(format!("unknown benchmark {other}")),
    })
}

fn sfu_exists() -> bool {
    root().join("benches/benches/sfu.rs").exists()
}

fn no_sfu() -> String {
    "benches/benches/sfu.rs does not exist yet (the SFU benchmark comes with the server)".into()
}

/// Runs the criterion benchmarks of `which`, then prints their summary and where the HTML
/// reports are.
pub fn bench(which: &str, args: &BenchArgs) -> Result {
    let criterion_dir = target_dir()?.join("criterion");
    let mut groups_run = Vec::new();
    for bench in targets(which)? {
        let mut c = cargo();
        c.args(["bench", "-p", "callsec-benches", "--bench", bench, "--"]);
        if let Some(l) = &args.save {
            c.args(["--save-baseline", l]);
        }
        if let Some(l) = &args.against {
            c.args(["--baseline", l]);
        }
        c.args(&args.criterion);
        let out = run_criterion(&format!("criterion bench {bench}"), c)?;
        let mut groups: Vec<&str> = Vec::new();
        for id in &out.seen {
            let g = id.split('/').next().unwrap_or(id);
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        for g in &groups {
            summary(&criterion_dir, g, &out);
        }
        groups_run.extend(groups.iter().map(|g| g.to_string()));
    }
    println!("\nHTML reports (plots drawn by plotters):");
    println!("  {}", criterion_dir.join("report/index.html").display());
    for g in &groups_run {
        let index = criterion_dir.join(g).join("report/index.html");
        if index.exists() {
            println!("  {}", index.display());
        }
    }
    if let Some(l) = &args.save {
        println!("baseline saved as '{l}': compare with `cargo xtask bench {which} --against {l}`");
    }
    Ok(())
}

/// `cargo xtask profile srtp|dtls|sfu [--seconds N] [-- <criterion filter>]`: runs the callsec
/// benchmarks of that area under `--profile-time`, sampled by pprof, and prints the SVG
/// flamegraphs written.
pub fn profile(which: &str, rest: &[String]) -> Result {
    let mut seconds = 3u64;
    let mut filter: Option<String> = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a whole number")?;
            }
            "--" => filter = it.next().cloned(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // The hot benchmarks: callsec's own ids (the rivals are compared, not profiled).
    let (bench, default_filter) = match which {
        "srtp" => ("srtp", "^srtp-[a-z]+/callsec/"),
        "dtls" => ("dtls", "^dtls-handshake/callsec/"),
        "sfu" if sfu_exists() => ("sfu", ""),
        "sfu" => {
            eprintln!(
                "note: {}; profiling the srtp-forward group (unprotect, then protect per \
                 receiver) instead",
                no_sfu()
            );
            ("srtp", "^srtp-forward/callsec/")
        }
        other => return Err(format!("unknown profile {other} (srtp|dtls|sfu)")),
    };
    let filter = filter.unwrap_or_else(|| default_filter.to_owned());
    let started = SystemTime::now();
    let mut c = cargo();
    c.args(["bench", "-p", "callsec-benches", "--bench", bench, "--"]);
    c.args(["--profile-time", &seconds.to_string()]);
    if !filter.is_empty() {
        c.arg(&filter);
    }
    run(
        &format!("pprof flamegraphs of {which} ({seconds} s each)"),
        c,
    )?;
    let mut svgs = Vec::new();
    find_flamegraphs(&target_dir()?.join("criterion"), started, &mut svgs);
    svgs.sort();
    if svgs.is_empty() {
        return Err(format!(
            "no flamegraph written (filter {filter:?} matched nothing?)"
        ));
    }
    println!("\nflamegraphs (SVG, open in a browser: hover for names, click to zoom):");
    for s in &svgs {
        println!("  {}", s.display());
    }
    Ok(())
}

fn find_flamegraphs(dir: &Path, since: SystemTime, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            find_flamegraphs(&path, since, out);
        } else if path.file_name().is_some_and(|n| n == "flamegraph.svg")
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        {
            out.push(path);
        }
    }
}

/// Criterion's comparison of one benchmark with its baseline, as it printed it.
struct Change {
    /// Change of the mean time, as criterion prints it (`+1.2345%`).
    mean: String,
    p: String,
    verdict: &'static str,
}

/// What criterion printed about one run.
#[derive(Default)]
struct Printed {
    /// Full ids (`group/function/parameter`) measured, in order.
    seen: Vec<String>,
    /// The comparisons with a baseline, by full id.
    changes: BTreeMap<String, Change>,
}

/// Runs criterion with its standard output passed through, and returns what it measured and
/// the comparisons it printed. The p-value and the verdict are in no file criterion writes,
/// only in this output.
fn run_criterion(
    what: &str,
    mut cmd: std::process::Command,
) -> std::result::Result<Printed, String> {
    let start = Instant::now();
    eprintln!("\n==> {what}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut printed = Printed::default();
    let mut current: Option<String> = None;
    let mut pending: Option<(String, String)> = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("{what}: {e}"))?;
            println!("{line}");
            parse_line(&line, &mut current, &mut pending, &mut printed);
        }
    }
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    eprintln!("<== {what}: {status} in {:.0?}", start.elapsed());
    if status.success() {
        Ok(printed)
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// One line of criterion's report: an id (alone on its line when longer than 23 characters,
/// else before `time:`), then, when there is a baseline, `... [lo mean hi] (p = 0.01 < 0.05)`
/// and the verdict on a line of its own.
fn parse_line(
    line: &str,
    current: &mut Option<String>,
    pending: &mut Option<(String, String)>,
    printed: &mut Printed,
) {
    let indented = line.starts_with(char::is_whitespace);
    let trimmed = line.trim();
    if !indented && !trimmed.is_empty() {
        if let Some((id, _)) = trimmed.split_once("time:") {
            *current = Some(id.trim().to_owned());
        } else if trimmed.contains('/') && !trimmed.contains(char::is_whitespace) {
            *current = Some(trimmed.to_owned());
            return;
        } else {
            return;
        }
    }
    // The first `time:` after an id is its measurement (later ones are its change).
    if trimmed.contains("time:")
        && let Some(id) = current.as_ref()
        && !printed.seen.contains(id)
    {
        printed.seen.push(id.clone());
    }
    if let Some(at) = trimmed.find("(p = ") {
        let mean = trimmed[..at]
            .split_once('[')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned();
        let p = trimmed[at + 5..]
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned();
        *pending = Some((mean, p));
        return;
    }
    let verdict = match trimmed {
        "No change in performance detected." => "no change",
        "Change within noise threshold." => "within noise",
        "Performance has improved." => "improved",
        "Performance has regressed." => "REGRESSED",
        _ => return,
    };
    if let (Some(id), Some((mean, p))) = (current.as_ref(), pending.take()) {
        printed
            .changes
            .insert(id.clone(), Change { mean, p, verdict });
    }
}

/// One measured benchmark: median time per operation and bytes per operation.
struct Row {
    param: String,
    id: String,
    median_ns: f64,
    bytes: Option<u64>,
}

/// Prints one row per (parameter, implementation) of `group`: median ns per operation,
/// throughput in MB/s (10^6 bytes) and operations per second, and, when criterion compared
/// the run with a baseline, the change of the mean and criterion's verdict.
fn summary(criterion_dir: &Path, group: &str, printed: &Printed) {
    let changes = &printed.changes;
    let dir = criterion_dir.join(group);
    let Ok(functions) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut ids: Vec<String> = functions
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && e.file_name() != "report")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // callsec (the default provider) first, then its other providers, the rivals, and the
    // floors last.
    ids.sort_by_key(|id| {
        (
            id != "callsec",
            !id.starts_with("callsec"),
            id.starts_with("floor"),
            id.clone(),
        )
    });
    let mut rows = Vec::new();
    for id in &ids {
        for e in std::fs::read_dir(dir.join(id))
            .into_iter()
            .flatten()
            .flatten()
        {
            let param = e.file_name().to_string_lossy().into_owned();
            if !printed.seen.contains(&format!("{group}/{id}/{param}")) {
                continue;
            }
            let new = e.path().join("new");
            if let Some(median_ns) = json(&new.join("estimates.json"))
                .and_then(|v| v["median"]["point_estimate"].as_f64())
            {
                let bytes = json(&new.join("benchmark.json")).and_then(|v| {
                    let t = &v["throughput"];
                    t["Bytes"].as_u64().or(t["BytesDecimal"].as_u64())
                });
                rows.push(Row {
                    param,
                    id: id.clone(),
                    median_ns,
                    bytes,
                });
            }
        }
    }
    let rank = |id: &str| ids.iter().position(|i| i == id);
    rows.sort_by(|a, b| (&a.param, rank(&a.id)).cmp(&(&b.param, rank(&b.id))));
    // A DTLS row is a handshake or a HelloVerifyRequest answer; an SRTP row is a packet.
    let unit = if group.starts_with("srtp") {
        "packet"
    } else {
        "op"
    };
    let compared = rows
        .iter()
        .any(|r| changes.contains_key(&format!("{group}/{}/{}", r.id, r.param)));
    println!("\n{group} (medians; MB = 10^6 bytes)");
    print!(
        "{:<36}{:<14}{:>12}{:>10}{:>14}",
        "parameter",
        "id",
        format!("ns/{unit}"),
        "MB/s",
        format!("{unit}s/s")
    );
    if compared {
        print!("{:>11}  {:<14}p", "change", "verdict");
    }
    println!();
    for r in &rows {
        let mbps = r
            .bytes
            .map(|b| format!("{:.1}", b as f64 * 1e3 / r.median_ns))
            .unwrap_or_else(|| "-".into());
        print!(
            "{:<36}{:<14}{:>12.1}{:>10}{:>14}",
            r.param,
            r.id,
            r.median_ns,
            mbps,
            per_second(1e9 / r.median_ns)
        );
        if compared {
            match changes.get(&format!("{group}/{}/{}", r.id, r.param)) {
                Some(c) => print!("{:>11}  {:<14}{}", c.mean, c.verdict, c.p),
                None => print!("{:>11}", "-"),
            }
        }
        println!();
    }
    // Ratios within this run: each provider against its own floor, and the default against
    // each rival.
    let median = |id: &str, p: &str| {
        rows.iter()
            .find(|r| r.id == id && r.param == p)
            .map(|r| r.median_ns)
    };
    let mut params: Vec<&str> = rows.iter().map(|r| r.param.as_str()).collect();
    params.dedup();
    let pairs = [
        ("callsec", "floor"),
        ("callsec-rustcrypto", "floor-rustcrypto"),
        ("callsec", "webrtc-srtp"),
        ("callsec", "webrtc-dtls"),
        ("callsec-rustcrypto", "webrtc-dtls"),
    ];
    for (a, b) in pairs {
        if !(ids.iter().any(|i| i == a) && ids.iter().any(|i| i == b)) {
            continue;
        }
        println!("{a} / {b}:");
        for p in &params {
            if let (Some(x), Some(y)) = (median(a, p), median(b, p)) {
                println!("  {p:<34} {:.2}x", x / y);
            }
        }
    }
}

/// `5.07 M`, `812.3 k`, `950`.
fn per_second(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
