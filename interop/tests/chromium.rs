//! Headless Chromium (Debian's `chromium`) against callsec's own ICE-lite, DTLS 1.2 and SRTP,
//! on loopback. The browser sends its fake camera and microphone; the test answers its offer
//! as an ICE-lite, DTLS-passive endpoint, completes ICE and the DTLS handshake with it,
//! decrypts its SRTP and SRTCP, and sends SRTCP receiver reports back, which the browser
//! must decrypt (they show up in its `remote-inbound-rtp` stats). Run for both SRTP
//! profiles. Chromium missing is a failure, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite, Config, Connection, Event, Fingerprint};
use callsec_ice::{Credentials, IceLite, PacketKind, classify, is_rtcp};
use callsec_srtp::{Context, ProtectionProfile};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PAGE: &str = include_str!("page.html");

/// What the browser side of the test has told us so far.
#[derive(Default)]
struct Shared {
    peer_fingerprint: Option<Fingerprint>,
    peer_ufrag: Option<String>,
    report: String,
    profile: Option<ProtectionProfile>,
    rtp_by_ssrc: HashMap<u32, u32>,
    rtcp: u32,
    rtcp_sent: u32,
    failures: Vec<String>,
}

#[test]
fn chromium_aead_aes_128_gcm() {
    run(ProtectionProfile::AeadAes128Gcm);
}

#[test]
fn chromium_aes128_cm_hmac_sha1_80() {
    run(ProtectionProfile::Aes128CmHmacSha1_80);
}

fn run(profile: ProtectionProfile) {
    let mut rng = ChaCha20Rng::seed_from_u64(profile.id().into());
    let mut config = Config::new(Certificate::generate(&mut rng));
    config.srtp_profiles = vec![profile];
    let config = Arc::new(config);
    let local = Credentials {
        ufrag: format!("callsec{}", profile.id()),
        pwd: "callsec-interop-password-0123".into(),
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media = udp.local_addr().unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", http.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let http_thread = {
        let (shared, stop, config, local) =
            (shared.clone(), stop.clone(), config.clone(), local.clone());
        std::thread::spawn(move || serve_http(http, &shared, &stop, &config, &local, media))
    };
    let udp_thread = {
        let (shared, stop, config) = (shared.clone(), stop.clone(), config.clone());
        std::thread::spawn(move || serve_media(udp, &shared, &stop, config, local))
    };

    let profile_dir = std::env::temp_dir().join(format!("callsec-chromium-{}", std::process::id()));
    let mut browser = launch_chromium(&url, &profile_dir.join(profile.id().to_string()));
    let deadline = Instant::now() + Duration::from_secs(40);
    let done = loop {
        std::thread::sleep(Duration::from_millis(200));
        let s = shared.lock().unwrap();
        let audio_and_video = s.rtp_by_ssrc.values().filter(|&&n| n >= 20).count() >= 2;
        let browser_read_ours = s.report.contains("\"remoteInbound\"");
        let browser_failed = s.report.contains("\"error\"");
        if audio_and_video && s.rtcp > 0 && browser_read_ours
            || browser_failed
            || Instant::now() > deadline
        {
            break audio_and_video && s.rtcp > 0 && browser_read_ours;
        }
        if let Ok(Some(status)) = browser.try_wait() {
            panic!("chromium exited early: {status}");
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = browser.kill();
    let _ = browser.wait();
    http_thread.join().unwrap();
    udp_thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile_dir);

    let s = shared.lock().unwrap();
    let summary = format!(
        "profile {:?}, rtp per ssrc {:?}, srtcp read {}, srtcp sent {}, failures {:?}, browser report {}",
        s.profile,
        s.rtp_by_ssrc,
        s.rtcp,
        s.rtcp_sent,
        &s.failures[..s.failures.len().min(5)],
        s.report
    );
    assert!(done, "{summary}");
    assert_eq!(s.profile, Some(profile), "{summary}");
    assert!(s.report.contains("\"dtls\":\"connected\""), "{summary}");
    assert!(
        s.report.contains("\"tls\":\"FEFD\""),
        "browser says DTLS 1.2: {summary}"
    );
    // Browser builds rename the profile and the suite (Chromium 156.0.8078.129 says
    // `SRTP_AEAD_AES_128_GCM` where earlier builds said `AEAD_AES_128_GCM`): compared by
    // meaning, and a name that means neither fails with the browser's own string.
    let report: serde_json::Value = serde_json::from_str(&s.report)
        .unwrap_or_else(|e| panic!("browser report is not JSON ({e}): {summary}"));
    callsec_interop::names::assert_srtp_profile(&report, profile);
    callsec_interop::names::assert_dtls_suite(&report, CipherSuite::EcdheEcdsaAes128GcmSha256);
}

fn launch_chromium(url: &str, profile_dir: &std::path::Path) -> Child {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no Chromium found: install Debian's `chromium` (apt-get install chromium)");
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium")
}

/// A minimal HTTP/1.1 server for the page, the offer and the browser's reports.
fn serve_http(
    listener: TcpListener,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    config: &Config,
    local: &Credentials,
    media: SocketAddr,
) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => handle_http(stream, shared, config, local, media),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn handle_http(
    mut stream: TcpStream,
    shared: &Mutex<Shared>,
    config: &Config,
    local: &Credentials,
    media: SocketAddr,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0usize);
            while data.len() < end + 4 + len {
                let Ok(n) = stream.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                data.extend_from_slice(&buf[..n]);
            }
            break (
                head,
                String::from_utf8_lossy(&data[end + 4..end + 4 + len]).into_owned(),
            );
        }
    };
    let request_line = head.lines().next().unwrap_or("");
    let (status, content_type, reply) = if request_line.starts_with("GET / ") {
        ("200 OK", "text/html", PAGE.to_owned())
    } else if request_line.starts_with("POST /offer ") {
        let mut s = shared.lock().unwrap();
        s.peer_fingerprint = sdp_attr(&body, "fingerprint").and_then(|f| f.parse().ok());
        s.peer_ufrag = sdp_attr(&body, "ice-ufrag").map(str::to_owned);
        (
            "200 OK",
            "application/sdp",
            answer(&body, config, local, media),
        )
    } else if request_line.starts_with("POST /report ") {
        shared.lock().unwrap().report = body;
        ("200 OK", "text/plain", String::new())
    } else {
        ("404 Not Found", "text/plain", String::new())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

fn sdp_attr<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
    })
}

/// The answer of an ICE-lite, DTLS-passive, receive-only endpoint: opus for audio, VP8 for
/// video, BUNDLE and rtcp-mux, our one host candidate.
fn answer(offer: &str, config: &Config, local: &Credentials, media: SocketAddr) -> String {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    let mids: Vec<&str> = sections
        .iter()
        .filter_map(|s| s.iter().find_map(|l| l.strip_prefix("a=mid:")))
        .collect();
    let mut sdp = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\na=ice-lite\r\na=msid-semantic: WMS\r\n",
        mids.join(" ")
    );
    for s in &sections {
        let kind = s[0]
            .strip_prefix("m=")
            .and_then(|m| m.split(' ').next())
            .unwrap_or("");
        let codec = if kind == "audio" {
            "opus/48000/2"
        } else {
            "VP8/90000"
        };
        let pt = s
            .iter()
            .find_map(|l| {
                let rest = l.strip_prefix("a=rtpmap:")?;
                let (pt, name) = rest.split_once(' ')?;
                (name == codec).then_some(pt)
            })
            .expect("offer has opus and VP8");
        let mid = s
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("0");
        sdp += &format!(
            "m={kind} {port} UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 127.0.0.1\r\na=rtcp:{port} IN IP4 127.0.0.1\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\na=end-of-candidates\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:{fp}\r\na=setup:passive\r\n\
             a=mid:{mid}\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:{pt} {codec}\r\n",
            port = media.port(),
            ufrag = local.ufrag,
            pwd = local.pwd,
            fp = config.certificate.fingerprint(),
        );
    }
    sdp
}

/// The media port: STUN to ICE-lite, DTLS to a server connection, SRTP/SRTCP unprotected
/// with the browser's key, receiver reports protected with ours.
fn serve_media(
    udp: UdpSocket,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    config: Arc<Config>,
    local: Credentials,
) {
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut ice = IceLite::new(local);
    let mut dtls: Option<(SocketAddr, Connection)> = None;
    let mut srtp: Option<(Context, Context)> = None;
    let mut last_rr = Instant::now();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            let datagram = &mut buf[..n];
            match classify(datagram) {
                PacketKind::Stun => {
                    if let Some(ufrag) = shared.lock().unwrap().peer_ufrag.clone() {
                        ice.set_remote_ufrag(&ufrag);
                    }
                    if let Err(e) = ice.handle_datagram(now, from, datagram) {
                        shared.lock().unwrap().failures.push(format!("stun: {e}"));
                    }
                }
                PacketKind::Dtls => {
                    if dtls.is_none() {
                        let fp = shared
                            .lock()
                            .unwrap()
                            .peer_fingerprint
                            .expect("offer came first");
                        let conn =
                            Connection::server(config.clone(), &[fp], from, &mut rng).unwrap();
                        dtls = Some((from, conn));
                    }
                    if let Some((_, conn)) = &mut dtls
                        && let Err(e) = conn.handle_datagram(now, datagram)
                    {
                        shared.lock().unwrap().failures.push(format!("dtls: {e}"));
                    }
                }
                PacketKind::Rtp => {
                    let Some((rx, _)) = &mut srtp else { continue };
                    let mut s = shared.lock().unwrap();
                    if is_rtcp(datagram) {
                        match rx.unprotect_rtcp(datagram) {
                            Ok(_) => s.rtcp += 1,
                            Err(e) => s.failures.push(format!("srtcp: {e}")),
                        }
                    } else {
                        let ssrc = u32::from_be_bytes([
                            datagram[8],
                            datagram[9],
                            datagram[10],
                            datagram[11],
                        ]);
                        match rx.unprotect_rtp(datagram) {
                            Ok(_) => *s.rtp_by_ssrc.entry(ssrc).or_default() += 1,
                            Err(e) => s.failures.push(format!("srtp: {e}")),
                        }
                    }
                }
                PacketKind::Other => {}
            }
        }
        while let Some(t) = ice.poll_transmit() {
            let _ = udp.send_to(&t.payload, t.destination);
        }
        let _ = ice.poll_event();
        if let Some((peer, conn)) = &mut dtls {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                let _ = conn.handle_timeout(now);
            }
            while let Some(d) = conn.poll_transmit() {
                let _ = udp.send_to(&d, *peer);
            }
            while let Some(e) = conn.poll_event() {
                if let Event::Connected(c) = e {
                    let rx = Context::new(&c.srtp.remote, callsec_srtp::Config::default()).unwrap();
                    let tx = Context::new(&c.srtp.local, callsec_srtp::Config::default()).unwrap();
                    srtp = Some((rx, tx));
                    shared.lock().unwrap().profile = Some(c.profile);
                }
            }
            // Every 300 ms, a receiver report for each SSRC heard, protected with our key.
            if let Some((_, tx)) = &mut srtp
                && now.duration_since(last_rr) > Duration::from_millis(300)
            {
                last_rr = now;
                let ssrcs: Vec<u32> = shared.lock().unwrap().rtp_by_ssrc.keys().copied().collect();
                for ssrc in ssrcs {
                    let mut rr = [0u8; 32 + 64];
                    rr[..8].copy_from_slice(&[0x81, 201, 0, 7, 0x0c, 0x0f, 0xfe, 0xe0]);
                    rr[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    let n = tx.protect_rtcp(&mut rr, 32).unwrap();
                    let _ = udp.send_to(&rr[..n], *peer);
                    shared.lock().unwrap().rtcp_sent += 1;
                }
            }
        }
    }
}
