//! Configuration shared by many connections.

use std::time::Duration;

use callsec_srtp::ProtectionProfile;

use crate::cert::Certificate;
use crate::crypto::Provider;
use crate::error::Error;
use crate::handshake::{
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
};

/// The two cipher suites callsec implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (0xC02B, RFC 5289): preferred.
    EcdheEcdsaAes128GcmSha256,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA (0xC00A, RFC 8422): HMAC-SHA1 and AES-256-CBC.
    EcdheEcdsaAes256CbcSha,
}

impl CipherSuite {
    /// Both suites, in callsec's preference order.
    pub const ALL: [CipherSuite; 2] = [
        Self::EcdheEcdsaAes128GcmSha256,
        Self::EcdheEcdsaAes256CbcSha,
    ];

    /// The IANA code point.
    pub const fn id(self) -> u16 {
        match self {
            Self::EcdheEcdsaAes128GcmSha256 => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Self::EcdheEcdsaAes256CbcSha => TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
        }
    }

    /// The suite for a code point, if callsec implements it.
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => Some(Self::EcdheEcdsaAes128GcmSha256),
            TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA => Some(Self::EcdheEcdsaAes256CbcSha),
            _ => None,
        }
    }

    /// The IANA name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Self::EcdheEcdsaAes256CbcSha => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        }
    }
}

/// How the extended master secret (RFC 7627) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtendedMasterSecret {
    /// Offered, and the handshake fails (handshake_failure) if the peer does not use it.
    #[default]
    Required,
    /// Offered and used when the peer supports it; the legacy master secret otherwise.
    Preferred,
}

/// Settings for connections; build one per certificate and share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    /// This side's certificate (its fingerprint goes into SDP).
    pub certificate: Certificate,
    /// Cipher suites in preference order (default: GCM, then CBC).
    pub cipher_suites: Vec<CipherSuite>,
    /// SRTP protection profiles in preference order (default: AEAD_AES_128_GCM, then
    /// AES128_CM_HMAC_SHA1_80). A server picks its first one the client offers.
    pub srtp_profiles: Vec<ProtectionProfile>,
    /// Extended master secret policy (default: required).
    pub extended_master_secret: ExtendedMasterSecret,
    /// Largest datagram sent (default 1200 bytes); handshake messages are fragmented to fit.
    pub mtu: usize,
    /// First retransmission timeout (RFC 6347 §4.2.4.1: 1 s).
    pub initial_retransmit_timeout: Duration,
    /// Ceiling of the doubling retransmission timeout (RFC 6347 §4.2.4.1: at least 60 s; at
    /// most a day).
    pub max_retransmit_timeout: Duration,
    /// Total time a handshake may take before the connection fails with `Error::Timeout`
    /// (at most a day).
    pub handshake_timeout: Duration,
    /// Whether a server demands a stateless cookie (HelloVerifyRequest, RFC 6347 §4.2.1)
    /// before it keeps handshake state (default: on).
    pub cookie_exchange: bool,
    /// Which library computes GCM records, ECDHE and ECDSA (default: `ring` when the `ring`
    /// feature is on, else RustCrypto; see [`Provider`]). RustCrypto takes every random
    /// value from the RNG the connection is given, so seeded handshakes are reproducible.
    pub provider: Provider,
}

impl Config {
    /// Defaults around a certificate.
    pub fn new(certificate: Certificate) -> Self {
        Self {
            certificate,
            cipher_suites: CipherSuite::ALL.to_vec(),
            srtp_profiles: ProtectionProfile::ALL.to_vec(),
            extended_master_secret: ExtendedMasterSecret::Required,
            mtu: 1200,
            initial_retransmit_timeout: Duration::from_secs(1),
            max_retransmit_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(60),
            cookie_exchange: true,
            provider: Provider::DEFAULT,
        }
    }

    /// Longest timeout accepted (retransmission ceiling, whole handshake): one day.
    const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !Provider::ALL.contains(&self.provider) {
            return Err(Error::Config(
                "crypto provider not compiled into callsec-dtls",
            ));
        }
        if self.cipher_suites.is_empty() {
            return Err(Error::Config("no cipher suite"));
        }
        if self.srtp_profiles.is_empty() {
            return Err(Error::Config("no SRTP profile"));
        }
        if !(256..=16384).contains(&self.mtu) {
            return Err(Error::Config("mtu must be 256..=16384"));
        }
        if self.initial_retransmit_timeout.is_zero()
            || self.max_retransmit_timeout < self.initial_retransmit_timeout
            || self.max_retransmit_timeout > Self::MAX_TIMEOUT
        {
            return Err(Error::Config("bad retransmission timeouts"));
        }
        // Deadlines are `now + timeout`: bounded so that the addition cannot overflow.
        if self.handshake_timeout > Self::MAX_TIMEOUT {
            return Err(Error::Config("handshake timeout longer than a day"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn timeouts_that_would_overflow_a_deadline_are_refused() {
        let mut config = Config::new(Certificate::generate(&mut ChaCha20Rng::seed_from_u64(1)));
        assert!(config.validate().is_ok());
        config.handshake_timeout = Duration::MAX;
        assert!(config.validate().is_err());
        config.handshake_timeout = Duration::from_secs(60);
        config.max_retransmit_timeout = Duration::MAX;
        assert!(config.validate().is_err());
        config.initial_retransmit_timeout = Duration::MAX;
        assert!(config.validate().is_err());
    }
}
