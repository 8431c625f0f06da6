//! `callsec`: the calls SFU's command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use callsec_server::config::{LogFormat, ServeArgs};
use callsec_server::{Settings, start};
use clap::{Parser, Subcommand};

/// callsec: a calls SFU where every hop is encrypted (TLS signaling, DTLS 1.2, SRTP).
#[derive(Parser, Debug)]
#[command(name = "callsec", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the calls server: signaling over TLS (self-signed by default), UDP media on
    /// 127.0.0.1, metrics on the admin listener, and (without --token-secret) a development
    /// token issuer that prints ready-to-use join tokens.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("callsec: {e}");
            return ExitCode::from(2);
        }
    };
    let subscriber = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match settings.log {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Pretty => subscriber.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callsec: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let dev_room = settings.dev_room.clone();
        let running = match start(settings).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("callsec: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("callsec serve");
        println!(
            "  signaling   wss://{}/ (TLS; self-signed unless --tls-cert)",
            running.signaling_addr
        );
        for (i, a) in running.media_addrs.iter().enumerate() {
            println!("  media       udp {a} (worker {i})");
        }
        println!("  DTLS        certificate {}", running.dtls_fingerprint);
        println!("  metrics     http://{}/metrics", running.admin_addr);
        if let Some(dev) = &running.dev {
            println!(
                "  demo call   https://{}/  (open it in two tabs and press Join)",
                running.signaling_addr
            );
            println!("  development tokens for room \"{dev_room}\" (valid 1 h):");
            for user in ["alice", "bob"] {
                if let Some(t) = dev.issue(user, &dev_room) {
                    println!("    {user:<6} {}", t.token);
                }
            }
            println!(
                "    more:  curl 'http://{}/token?user=carol&room={dev_room}'",
                running.admin_addr
            );
            println!(
                "    revoke: curl -X POST 'http://{}/revoke?session=<session_id>'",
                running.admin_addr
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        tracing::info!("shutting down: close_notify to every participant");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
