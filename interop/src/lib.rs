//! Real-browser harness for callsec's interop tests: Debian's `chromium` and `firefox-esr`,
//! headless with fake devices on loopback, a test PKI they trust, the reports pages print
//! (`console.log("CALLSEC-REPORT " + JSON)`, read from the browser's console output), a
//! DevTools screenshot, and a plain HTTP client for the server's admin listener.
//!
//! Set `CALLSEC_HEADFUL=1` (with a display, e.g. under `xvfb-run` or on a desktop) to watch
//! the browsers instead of running them headless, and `CALLSEC_REPORTS=1` to print every
//! report as it arrives.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

pub mod names;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Marker the demo page prints before each JSON report.
pub const REPORT: &str = "CALLSEC-REPORT ";

/// A CA and a `localhost`/`127.0.0.1` server certificate it signed, as PEM files.
#[derive(Debug)]
pub struct TestPki {
    /// The CA certificate (Firefox imports it into its NSS database).
    pub ca: PathBuf,
    /// The server certificate chain.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// Base64 SHA-256 of the server key's SubjectPublicKeyInfo (Chromium's
    /// `--ignore-certificate-errors-spki-list`: trusts this key and nothing else).
    pub spki_sha256: String,
}

impl TestPki {
    /// Generates a fresh CA and server certificate into `dir`.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
        };
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "callsec interop test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            spki_sha256: base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key.subject_public_key_info())),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }
}

/// Which browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `chromium` (BoringSSL DTLS).
    Chromium,
    /// Debian's `firefox-esr` (NSS DTLS).
    Firefox,
}

/// A running browser showing one page; killed on drop.
#[derive(Debug)]
pub struct Browser {
    /// Which browser.
    pub kind: Kind,
    /// A label for messages.
    pub name: String,
    child: Child,
    reports: Arc<Mutex<Vec<Value>>>,
    lines: Arc<Mutex<Vec<String>>>,
    profile: PathBuf,
}

fn headless() -> bool {
    std::env::var_os("CALLSEC_HEADFUL").is_none_or(|v| v.is_empty() || v == "0")
}

fn found(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Browser {
    /// Starts Chromium on `url`, trusting the test PKI's server key, with fake camera,
    /// microphone and screen capture. A missing Chromium is a panic, never a skip.
    pub fn chromium(name: &str, url: &str, pki: &TestPki, profile: &Path) -> Self {
        let bin = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| found(b))
            .expect("no Chromium: install Debian's `chromium` (.ci/run does)");
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).unwrap();
        let mut cmd = Command::new(bin);
        if headless() {
            cmd.arg("--headless");
        }
        cmd.args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,860",
            "--remote-debugging-port=0",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            pki.spki_sha256
        ))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url);
        Self::spawn(Kind::Chromium, name, cmd, profile)
    }

    /// Starts Firefox ESR on `url` with a fresh profile whose NSS database trusts the test
    /// CA, fake devices, loopback ICE and console output on stdout. A missing Firefox or
    /// `certutil` is a panic, never a skip.
    pub fn firefox(name: &str, url: &str, pki: &TestPki, profile: &Path) -> Self {
        assert!(
            found("firefox-esr"),
            "no Firefox: install Debian's `firefox-esr` (.ci/run does)"
        );
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).unwrap();
        let db = format!("sql:{}", profile.display());
        let certutil = |args: &[&str]| {
            let out = Command::new("certutil")
                .args(args)
                .output()
                .expect("no certutil: install Debian's `libnss3-tools` (.ci/run does)");
            assert!(out.status.success(), "certutil {args:?}: {out:?}");
        };
        certutil(&["-N", "-d", &db, "--empty-password"]);
        certutil(&[
            "-A",
            "-d",
            &db,
            "-n",
            "callsec-interop-ca",
            "-t",
            "C,,",
            "-i",
            pki.ca.to_str().unwrap(),
        ]);
        std::fs::write(
            profile.join("user.js"),
            [
                ("media.navigator.streams.fake", "true"),
                ("media.navigator.permission.disabled", "true"),
                ("media.peerconnection.ice.loopback", "true"),
                ("media.peerconnection.ice.obfuscate_host_addresses", "false"),
                ("media.autoplay.default", "0"),
                ("devtools.console.stdout.content", "true"),
                ("browser.shell.checkDefaultBrowser", "false"),
                ("datareporting.policy.dataSubmissionEnabled", "false"),
                ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
                ("app.update.disabledForTesting", "true"),
                ("browser.aboutwelcome.enabled", "false"),
                ("network.proxy.type", "0"),
            ]
            .iter()
            .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
            .collect::<String>(),
        )
        .unwrap();
        let mut cmd = Command::new("firefox-esr");
        if headless() {
            cmd.arg("--headless");
        }
        cmd.args(["--no-remote", "--profile"])
            .arg(profile)
            .arg(url)
            .env("MOZ_CRASHREPORTER_DISABLE", "1");
        Self::spawn(Kind::Firefox, name, cmd, profile)
    }

    fn spawn(kind: Kind, name: &str, mut cmd: Command, profile: &Path) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let echo = std::env::var_os("CALLSEC_REPORTS").is_some();
        for stream in out {
            let (reports, lines, name) = (reports.clone(), lines.clone(), name.to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(r) = parse_report(&line) {
                        if echo {
                            eprintln!("{name}: {REPORT}{r}");
                        }
                        reports.lock().unwrap().push(r);
                    } else {
                        let mut l = lines.lock().unwrap();
                        if l.len() < 2000 {
                            l.push(line);
                        }
                    }
                }
            });
        }
        Self {
            kind,
            name: name.to_owned(),
            child,
            reports,
            lines,
            profile: profile.to_owned(),
        }
    }

    /// Every report so far, oldest first.
    pub fn reports(&self) -> Vec<Value> {
        self.reports.lock().unwrap().clone()
    }

    /// The newest report.
    pub fn latest(&self) -> Option<Value> {
        self.reports.lock().unwrap().last().cloned()
    }

    /// Waits until `done` holds for the newest report; panics after `limit` with the
    /// newest report and the browser's last output lines.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.latest()
                && done(&r)
            {
                return r;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) waiting for {what}\n{}",
                    self.name,
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {limit:?}; newest report: {}\n{}",
                self.name,
                self.latest().map_or("none".into(), |r| r.to_string()),
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The browser's last output lines that were not reports (for failure messages).
    pub fn tail(&self) -> String {
        let l = self.lines.lock().unwrap();
        l[l.len().saturating_sub(15)..].join("\n")
    }

    /// A PNG of the page (Chromium only), through the DevTools protocol.
    pub fn screenshot(&self) -> Vec<u8> {
        assert_eq!(
            self.kind,
            Kind::Chromium,
            "screenshots are taken in Chromium"
        );
        let active = std::fs::read_to_string(self.profile.join("DevToolsActivePort")).unwrap();
        let port: u16 = active.lines().next().unwrap().trim().parse().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (_, list) = http(addr, "GET", "/json/list");
        let targets: Value = serde_json::from_str(&list).unwrap();
        let ws_url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::tungstenite::client(ws_url.as_str(), stream).unwrap();
        ws.send(r#"{"id":1,"method":"Page.captureScreenshot","params":{"format":"png"}}"#.into())
            .unwrap();
        loop {
            let msg = ws.read().unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == 1 {
                let data = v["result"]["data"].as_str().expect("screenshot data");
                return base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A page report from one line of browser output: Chromium logs
/// `... CONSOLE ... "CALLSEC-REPORT {json}", source: ...`, Firefox
/// `console.log: "CALLSEC-REPORT {json, escaped as a JS string}"`.
pub fn parse_report(line: &str) -> Option<Value> {
    let at = line.find(REPORT)?;
    let text = if let Some(start) = line.find("console.log: \"") {
        let inner = &line[start + "console.log: ".len()..];
        let unquoted: String = serde_json::from_str(inner.trim_end()).ok()?;
        unquoted.strip_prefix(REPORT)?.to_owned()
    } else {
        let rest = &line[at + REPORT.len()..];
        rest[..rest.rfind('}')? + 1].to_owned()
    };
    serde_json::from_str(&text).ok()
}

/// This host's own address on its default route (no packet is sent: connecting a UDP
/// socket only picks the source address). Firefox pairs no loopback candidates, whatever
/// its `media.peerconnection.ice.loopback` says, so a server it calls must announce this
/// address; datagrams to it still never leave the host.
pub fn host_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("203.0.113.1:9")
        .expect("a default route, to find this host's own address for Firefox");
    s.local_addr().unwrap().ip()
}

/// One plain HTTP/1.1 request (no body); returns the status and body.
pub fn http(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read to the end, or to Content-Length where the server keeps the connection open.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = tcp.read(&mut buf).unwrap();
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .is_some_and(|len| body.len() >= len)
        });
        if n == 0 || complete {
            break;
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` (with its labels, e.g. `callsec_rooms{worker="0"}`) in
/// an OpenMetrics exposition; summed over label sets when `name` has none.
pub fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| *k == name || (!name.contains('{') && k.split('{').next() == Some(name)))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}
