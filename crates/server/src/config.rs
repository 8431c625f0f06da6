//! Settings: embedded defaults, then a TOML file, then environment variables and flags
//! (clap reads both; a flag beats its variable). `callsec serve --help` documents each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_signaling::{AuthConfig, TokenKey};
use callsec_srtp::ProtectionProfile;
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::admin::DevIssuer;

/// An SRTP protection profile by any of its names (see [`crate::names`]): the registered
/// `SRTP_AEAD_AES_128_GCM`, `AEAD_AES_128_GCM`, `aead-aes-128-gcm`, `aead-aes128-gcm`;
/// `SRTP_AES128_CM_HMAC_SHA1_80`, `aes128-cm-hmac-sha1-80`, in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SrtpProfileName(pub ProtectionProfile);

impl std::str::FromStr for SrtpProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::srtp_profile(s).map(Self).ok_or_else(|| {
            format!(
                "{s:?} is not an SRTP profile callsec implements ({}, {})",
                ProtectionProfile::AeadAes128Gcm,
                ProtectionProfile::Aes128CmHmacSha1_80
            )
        })
    }
}

impl TryFrom<String> for SrtpProfileName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SrtpProfileName> for ProtectionProfile {
    fn from(p: SrtpProfileName) -> Self {
        p.0
    }
}

/// A DTLS cipher suite by any of its names (see [`crate::names`]): IANA's
/// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, OpenSSL's `ECDHE-ECDSA-AES128-GCM-SHA256`, or
/// the short `ecdhe-ecdsa-aes128-gcm`; likewise for `..._AES_256_CBC_SHA`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DtlsSuiteName(pub CipherSuite);

impl std::str::FromStr for DtlsSuiteName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::dtls_suite(s).map(Self).ok_or_else(|| {
            format!(
                "{s:?} is not a DTLS cipher suite callsec implements ({}, {})",
                CipherSuite::EcdheEcdsaAes128GcmSha256.name(),
                CipherSuite::EcdheEcdsaAes256CbcSha.name()
            )
        })
    }
}

impl TryFrom<String> for DtlsSuiteName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DtlsSuiteName> for CipherSuite {
    fn from(s: DtlsSuiteName) -> Self {
        s.0
    }
}

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One JSON object per line (`tracing-subscriber`'s json format).
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// `callsec serve` flags. Each has an environment variable; each can also be set in the
/// TOML file given by `--config` (same names, kebab-case). Unset means the default shown.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServeArgs {
    /// TOML file with any of these settings (flags and environment win over it).
    #[arg(long, env = "CALLSEC_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Signaling listen address (TLS WebSocket). Default 127.0.0.1:8443.
    #[arg(long, env = "CALLSEC_SIGNALING")]
    pub signaling: Option<SocketAddr>,
    /// IP the media sockets bind. Default 127.0.0.1; 0.0.0.0 for a real deployment.
    #[arg(long, env = "CALLSEC_MEDIA_IP")]
    pub media_ip: Option<IpAddr>,
    /// First media UDP port: worker i binds port+i. Default 0 (each worker picks a free port).
    #[arg(long, env = "CALLSEC_MEDIA_PORT")]
    pub media_port: Option<u16>,
    /// Public IP to put in ICE candidates when the server sits behind NAT (default: the
    /// bound IP).
    #[arg(long, env = "CALLSEC_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Media workers (threads, each with its own socket and rooms). Default: one per core.
    #[arg(long, env = "CALLSEC_WORKERS")]
    pub workers: Option<usize>,
    /// SRTP profiles in preference order, comma-separated, by any usual name (IANA's
    /// SRTP_AEAD_AES_128_GCM, or aead-aes-128-gcm; any case, - or _). Default
    /// aead-aes-128-gcm,aes128-cm-hmac-sha1-80.
    #[arg(long, env = "CALLSEC_SRTP_PROFILES", value_delimiter = ',')]
    pub srtp_profiles: Option<Vec<SrtpProfileName>>,
    /// DTLS cipher suites in preference order, comma-separated, by IANA, OpenSSL or short
    /// name (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ECDHE-ECDSA-AES128-GCM-SHA256,
    /// ecdhe-ecdsa-aes128-gcm). Default ecdhe-ecdsa-aes128-gcm,ecdhe-ecdsa-aes256-cbc.
    #[arg(long, env = "CALLSEC_DTLS_SUITES", value_delimiter = ',')]
    pub dtls_suites: Option<Vec<DtlsSuiteName>>,
    /// Participants per room. Default 16.
    #[arg(long, env = "CALLSEC_MAX_ROOM_SIZE")]
    pub max_room_size: Option<usize>,
    /// Participants per worker. Default 1000.
    #[arg(long, env = "CALLSEC_MAX_PARTICIPANTS_PER_WORKER")]
    pub max_participants_per_worker: Option<usize>,
    /// Highest bitrate (bits/s) the server invites a publisher to send per video stream
    /// (REMB). Default 2500000.
    #[arg(long, env = "CALLSEC_MAX_BITRATE")]
    pub max_bitrate: Option<u64>,
    /// Seconds a participant has to complete ICE and DTLS before it is dropped. Default 30.
    #[arg(long, env = "CALLSEC_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<u64>,
    /// Seconds a signaling connection may stay silent (no message, no answer to the
    /// server's WebSocket pings, sent every third of this) while its media is not alive
    /// either, before it is closed with 4015. Default 60.
    #[arg(long, env = "CALLSEC_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Admin listener: /metrics (Prometheus), and with the development issuer /token and
    /// /revoke. Keep it on loopback. Default 127.0.0.1:9464.
    #[arg(long, env = "CALLSEC_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// HS256 secret (at least 32 bytes) your token service signs join tokens with. Unset:
    /// a development issuer with a random secret prints ready-to-use tokens.
    #[arg(long, env = "CALLSEC_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Token audience (`aud`) this server accepts. Default "callsec".
    #[arg(long, env = "CALLSEC_AUDIENCE")]
    pub audience: Option<String>,
    /// File where revocations persist. Default: callsec-revocations.log in the temp dir.
    #[arg(long, env = "CALLSEC_REVOCATIONS")]
    pub revocations: Option<PathBuf>,
    /// PEM certificate chain for signaling TLS (default: a self-signed localhost one).
    #[arg(long, env = "CALLSEC_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for signaling TLS.
    #[arg(long, env = "CALLSEC_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Browser origins allowed to open the WebSocket (exact `scheme://host[:port]`),
    /// comma-separated. Default: the signaling address's own https origin.
    #[arg(long, env = "CALLSEC_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Room the development issuer's printed tokens allow. Default "demo".
    #[arg(long, env = "CALLSEC_DEV_ROOM")]
    pub dev_room: Option<String>,
    /// Log format. Default json.
    #[arg(long, env = "CALLSEC_LOG")]
    pub log: Option<LogFormat>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Signaling listen address.
    pub signaling: SocketAddr,
    /// Media bind IP.
    pub media_ip: IpAddr,
    /// First media port (0: ephemeral).
    pub media_port: u16,
    /// IP advertised in candidates.
    pub public_ip: Option<IpAddr>,
    /// Worker count.
    pub workers: usize,
    /// SRTP profiles, preferred first.
    pub srtp_profiles: Vec<ProtectionProfile>,
    /// DTLS suites, preferred first.
    pub dtls_suites: Vec<CipherSuite>,
    /// Room size.
    pub max_room_size: usize,
    /// Participants per worker.
    pub max_participants_per_worker: usize,
    /// REMB ceiling.
    pub max_bitrate: u64,
    /// ICE+DTLS deadline.
    pub connect_timeout: Duration,
    /// Signaling idle timeout.
    pub idle_timeout: Duration,
    /// The server's WebSocket ping interval: a third of the idle timeout (no flag of its
    /// own; tests set it apart).
    pub ping_interval: Duration,
    /// Bounds on the source addresses one participant may validate by ICE (not a flag:
    /// the defaults suit browsers; tests shorten the lifetimes).
    pub ice_limits: callsec_rtc::Limits,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Production token secret.
    pub token_secret: Option<Vec<u8>>,
    /// Token audience.
    pub audience: String,
    /// Revocation file.
    pub revocations: PathBuf,
    /// TLS certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// TLS key.
    pub tls_key: Option<PathBuf>,
    /// Allowed browser origins.
    pub allowed_origins: Vec<String>,
    /// Development room.
    pub dev_room: String,
    /// Log format.
    pub log: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Self::resolve(ServeArgs::default()).unwrap_or_else(|_| unreachable_defaults())
    }
}

fn unreachable_defaults() -> Settings {
    // `resolve` of empty args reads no file and cannot fail; keep a plain fallback anyway.
    Settings {
        signaling: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8443),
        media_ip: Ipv4Addr::LOCALHOST.into(),
        media_port: 0,
        public_ip: None,
        workers: 1,
        srtp_profiles: ProtectionProfile::ALL.to_vec(),
        dtls_suites: CipherSuite::ALL.to_vec(),
        max_room_size: 16,
        max_participants_per_worker: 1000,
        max_bitrate: 2_500_000,
        connect_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ping_interval: Duration::from_secs(20),
        ice_limits: callsec_rtc::Limits::default(),
        admin: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9464),
        token_secret: None,
        audience: "callsec".into(),
        revocations: std::env::temp_dir().join("callsec-revocations.log"),
        tls_cert: None,
        tls_key: None,
        allowed_origins: Vec::new(),
        dev_room: "demo".into(),
        log: LogFormat::Json,
    }
}

impl Settings {
    /// Flags/environment over the TOML file over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($f:ident) => {
                args.$f.clone().or(file.$f.clone())
            };
        }
        let d = unreachable_defaults();
        let signaling = pick!(signaling).unwrap_or(d.signaling);
        let workers = pick!(workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let srtp_profiles: Vec<ProtectionProfile> = pick!(srtp_profiles)
            .map(|v| v.into_iter().map(Into::into).collect())
            .unwrap_or(d.srtp_profiles);
        let dtls_suites: Vec<CipherSuite> = pick!(dtls_suites)
            .map(|v| v.into_iter().map(Into::into).collect())
            .unwrap_or(d.dtls_suites);
        let idle_timeout = pick!(idle_timeout).map_or(d.idle_timeout, Duration::from_secs);
        let token_secret = pick!(token_secret).map(String::into_bytes);
        if token_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err("token-secret must be at least 32 bytes".into());
        }
        let s = Settings {
            signaling,
            media_ip: pick!(media_ip).unwrap_or(d.media_ip),
            media_port: pick!(media_port).unwrap_or(0),
            public_ip: pick!(public_ip),
            workers,
            srtp_profiles,
            dtls_suites,
            max_room_size: pick!(max_room_size).unwrap_or(d.max_room_size),
            max_participants_per_worker: pick!(max_participants_per_worker)
                .unwrap_or(d.max_participants_per_worker),
            max_bitrate: pick!(max_bitrate).unwrap_or(d.max_bitrate),
            connect_timeout: pick!(connect_timeout).map_or(d.connect_timeout, Duration::from_secs),
            idle_timeout,
            ping_interval: idle_timeout / 3,
            ice_limits: d.ice_limits,
            admin: pick!(admin).unwrap_or(d.admin),
            token_secret,
            audience: pick!(audience).unwrap_or(d.audience),
            revocations: pick!(revocations).unwrap_or(d.revocations),
            tls_cert: pick!(tls_cert),
            tls_key: pick!(tls_key),
            allowed_origins: pick!(allowed_origins).unwrap_or_else(|| {
                vec![
                    format!("https://localhost:{}", signaling.port()),
                    format!("https://{signaling}"),
                ]
            }),
            dev_room: pick!(dev_room).unwrap_or(d.dev_room),
            log: pick!(log).unwrap_or_default(),
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.workers == 0, "workers must be at least 1"),
            (self.workers > 256, "workers must be at most 256"),
            (self.srtp_profiles.is_empty(), "no SRTP profile"),
            (self.dtls_suites.is_empty(), "no DTLS suite"),
            (self.max_room_size < 2, "max-room-size must be at least 2"),
            (
                self.max_participants_per_worker == 0,
                "max-participants-per-worker is 0",
            ),
            (self.max_bitrate < 100_000, "max-bitrate below 100 kbit/s"),
            (self.connect_timeout.is_zero(), "connect-timeout is 0"),
            (self.idle_timeout.is_zero(), "idle-timeout is 0"),
            (
                self.tls_cert.is_some() != self.tls_key.is_some(),
                "tls-cert and tls-key go together",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err((*why).into()),
            None => Ok(()),
        }
    }

    /// The development token issuer, unless a production secret is configured.
    pub fn dev_issuer(&self) -> Option<DevIssuer> {
        self.token_secret
            .is_none()
            .then(|| DevIssuer::new(&self.audience))
    }

    /// Token validation for signaling: the production secret, else the dev issuer's.
    pub fn auth(&self, dev: Option<&DevIssuer>) -> AuthConfig {
        let secret = match (&self.token_secret, dev) {
            (Some(s), _) => s.clone(),
            (None, Some(d)) => d.secret().to_vec(),
            (None, None) => Vec::new(),
        };
        AuthConfig::new(TokenKey::Hs256 { secret }, self.audience.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser};

    /// `callsec serve`'s flags alone.
    #[derive(Parser, Debug)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Every `Default <value>` that `--help` prints is accepted by its flag and resolves to
    /// the settings that no flag gives: help never advertises a value the CLI refuses or
    /// a default it does not use. (Prose defaults, `Default: one per core`, are skipped.)
    #[test]
    fn every_default_help_prints_parses_back_to_the_default() {
        let defaults = format!("{:?}", Settings::resolve(ServeArgs::default()).unwrap());
        let cmd = Serve::command();
        let mut checked = Vec::new();
        for arg in cmd.get_arguments() {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let Some((_, rest)) = help.split_once("Default ") else {
                continue;
            };
            let value = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(['.', ';', ','])
                .trim_matches('"');
            let long = arg.get_long().unwrap();
            let parsed = Serve::try_parse_from(["serve", &format!("--{long}"), value])
                .unwrap_or_else(|e| panic!("help says --{long} defaults to {value}: {e}"));
            let s = Settings::resolve(parsed.args).unwrap();
            assert_eq!(format!("{s:?}"), defaults, "--{long} {value}");
            checked.push(long);
        }
        for flag in [
            "srtp-profiles",
            "dtls-suites",
            "signaling",
            "idle-timeout",
            "log",
        ] {
            assert!(checked.contains(&flag), "{flag} not checked: {checked:?}");
        }
    }

    #[test]
    fn profiles_and_suites_by_any_usual_name() {
        for spelling in [
            "SRTP_AEAD_AES_128_GCM,SRTP_AES128_CM_HMAC_SHA1_80",
            "AEAD_AES_128_GCM,AES_CM_128_HMAC_SHA1_80",
            "aead-aes128-gcm,aes128-cm-hmac-sha1-80",
        ] {
            let s = Serve::try_parse_from(["serve", "--srtp-profiles", spelling]).unwrap();
            let s = Settings::resolve(s.args).unwrap();
            assert_eq!(s.srtp_profiles, ProtectionProfile::ALL, "{spelling}");
        }
        let s = Serve::try_parse_from([
            "serve",
            "--dtls-suites",
            "ECDHE-ECDSA-AES256-SHA,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ])
        .unwrap();
        let s = Settings::resolve(s.args).unwrap();
        assert_eq!(
            s.dtls_suites,
            [
                CipherSuite::EcdheEcdsaAes256CbcSha,
                CipherSuite::EcdheEcdsaAes128GcmSha256
            ]
        );
        let refused = Serve::try_parse_from(["serve", "--srtp-profiles", "AEAD_AES_256_GCM"])
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("not an SRTP profile callsec implements"),
            "{refused}"
        );
        let refused =
            Serve::try_parse_from(["serve", "--dtls-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"])
                .unwrap_err()
                .to_string();
        assert!(refused.contains("not a DTLS cipher suite"), "{refused}");
        // The TOML file reads the same names.
        let file: ServeArgs =
            toml::from_str("srtp-profiles = [\"SRTP_AEAD_AES_128_GCM\"]\n").unwrap();
        assert_eq!(
            file.srtp_profiles,
            Some(vec![SrtpProfileName(ProtectionProfile::AeadAes128Gcm)])
        );
        assert!(toml::from_str::<ServeArgs>("dtls-suites = [\"rc4\"]\n").is_err());
    }

    #[test]
    fn defaults_file_then_flags() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.signaling.port(), 8443);
        assert_eq!(s.srtp_profiles[0], ProtectionProfile::AeadAes128Gcm);
        assert_eq!(s.dtls_suites[0], CipherSuite::EcdheEcdsaAes128GcmSha256);
        assert!(s.dev_issuer().is_some());

        let dir = std::env::temp_dir().join(format!("callsec-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("callsec.toml");
        std::fs::write(
            &path,
            "srtp-profiles = [\"aes128-cm-hmac-sha1-80\"]\nmax-room-size = 4\nworkers = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            workers: Some(2),
            ..Default::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(
            s.srtp_profiles,
            vec![ProtectionProfile::Aes128CmHmacSha1_80]
        );
        assert_eq!(s.max_room_size, 4);
        assert_eq!(s.workers, 2, "the flag wins over the file");

        std::fs::write(&path, "no-such-setting = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(
            Settings::resolve(args)
                .unwrap_err()
                .contains("unknown field")
        );
        let args = ServeArgs {
            token_secret: Some("short".into()),
            ..Default::default()
        };
        assert!(Settings::resolve(args).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
