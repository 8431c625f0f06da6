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

/// An SRTP protection profile by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SrtpProfileName {
    /// AEAD_AES_128_GCM (RFC 7714).
    AeadAes128Gcm,
    /// AES128_CM_HMAC_SHA1_80 (RFC 3711).
    Aes128CmHmacSha1_80,
}

impl From<SrtpProfileName> for ProtectionProfile {
    fn from(p: SrtpProfileName) -> Self {
        match p {
            SrtpProfileName::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProfileName::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        }
    }
}

/// A DTLS cipher suite by short name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DtlsSuiteName {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.
    EcdheEcdsaAes128Gcm,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA.
    EcdheEcdsaAes256Cbc,
}

impl From<DtlsSuiteName> for CipherSuite {
    fn from(s: DtlsSuiteName) -> Self {
        match s {
            DtlsSuiteName::EcdheEcdsaAes128Gcm => CipherSuite::EcdheEcdsaAes128GcmSha256,
            DtlsSuiteName::EcdheEcdsaAes256Cbc => CipherSuite::EcdheEcdsaAes256CbcSha,
        }
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
    /// SRTP profiles in preference order, comma-separated. Default
    /// aead-aes-128-gcm,aes128-cm-hmac-sha1-80.
    #[arg(long, env = "CALLSEC_SRTP_PROFILES", value_delimiter = ',')]
    pub srtp_profiles: Option<Vec<SrtpProfileName>>,
    /// DTLS cipher suites in preference order, comma-separated. Default
    /// ecdhe-ecdsa-aes128-gcm,ecdhe-ecdsa-aes256-cbc.
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
