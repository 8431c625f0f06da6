//! SRTP profiles and DTLS cipher suites named by meaning, not by one spelling.
//!
//! The same profile goes by several names: RFC 5764 and RFC 7714 register
//! `SRTP_AES128_CM_HMAC_SHA1_80` and `SRTP_AEAD_AES_128_GCM`, RFC 7714's text says
//! `AEAD_AES_128_GCM`, BoringSSL says `AES_CM_128_HMAC_SHA1_80`, and people type
//! `aead-aes-128-gcm` or `aead-aes128-gcm`. Suites come as IANA names
//! (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`), OpenSSL's (`ECDHE-ECDSA-AES128-GCM-SHA256`,
//! `ECDHE-ECDSA-AES256-SHA`) or short ones (`ecdhe-ecdsa-aes128-gcm`). Settings (flags,
//! environment, TOML) and the interop tests (what browsers report in `getStats()`) read
//! them all here.
//!
//! A name is split into words at `-`, `_`, spaces and letter/digit boundaries, in any case;
//! words that say nothing about which profile or suite it is (`SRTP`, `TLS`, `WITH`,
//! `AEAD`, `HMAC`, `CBC`) are dropped; what is left must be exactly the words of one of
//! ours (for a suite, its hash may be left out: ours differ without it). A name that says
//! more, a 256-bit key or a 32-bit tag, names nothing.

use callsec_dtls::CipherSuite;
use callsec_srtp::ProtectionProfile;

/// Words that do not tell one profile or suite from another.
const NOISE: &[&str] = &["SRTP", "TLS", "WITH", "AEAD", "HMAC", "CBC"];

/// A name's meaningful words, sorted.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split(['_', '-', ' ']) {
        let mut word = String::new();
        let mut digits = None;
        for c in part.chars() {
            let d = c.is_ascii_digit();
            if digits.is_some_and(|was| was != d) {
                out.push(std::mem::take(&mut word));
            }
            digits = Some(d);
            word.push(c.to_ascii_uppercase());
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out.retain(|w| !NOISE.contains(&w.as_str()));
    out.sort();
    out
}

/// The SRTP profile `name` means, if it is one of ours.
pub fn srtp_profile(name: &str) -> Option<ProtectionProfile> {
    let w = words(name);
    ProtectionProfile::ALL
        .into_iter()
        .find(|p| words(p.name()) == w)
}

/// The DTLS cipher suite `name` means, if it is one of ours.
pub fn dtls_suite(name: &str) -> Option<CipherSuite> {
    let w = words(name);
    CipherSuite::ALL.into_iter().find(|s| {
        let full = s.name();
        // The hash is the name's last part (`_SHA256`, `_SHA`).
        let unhashed = full.rsplit_once('_').map_or(full, |(head, _)| head);
        words(full) == w || words(unhashed) == w
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_spelling_names_its_profile_and_no_other() {
        let gcm = Some(ProtectionProfile::AeadAes128Gcm);
        let cm = Some(ProtectionProfile::Aes128CmHmacSha1_80);
        for (name, want) in [
            ("AEAD_AES_128_GCM", gcm),
            ("SRTP_AEAD_AES_128_GCM", gcm),
            ("aead-aes-128-gcm", gcm),
            ("aead-aes128-gcm", gcm),
            ("SRTP_AES128_CM_HMAC_SHA1_80", cm),
            ("AES_CM_128_HMAC_SHA1_80", cm),
            ("aes128-cm-hmac-sha1-80", cm),
            ("AES128_CM_SHA1_80", cm),
            // Other profiles are never ours.
            ("SRTP_AEAD_AES_256_GCM", None),
            ("AEAD_AES_256_GCM", None),
            ("SRTP_AES128_CM_HMAC_SHA1_32", None),
            ("AES_CM_128_HMAC_SHA1_32", None),
            ("SRTP_NULL_HMAC_SHA1_80", None),
            ("aes-128-gcm-sha1-80", None),
            ("", None),
        ] {
            assert_eq!(srtp_profile(name), want, "{name}");
        }
    }

    #[test]
    fn every_known_spelling_names_its_suite_and_no_other() {
        let gcm = Some(CipherSuite::EcdheEcdsaAes128GcmSha256);
        let cbc = Some(CipherSuite::EcdheEcdsaAes256CbcSha);
        for (name, want) in [
            ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", gcm),
            ("ECDHE-ECDSA-AES128-GCM-SHA256", gcm),
            ("ecdhe-ecdsa-aes128-gcm", gcm),
            ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", cbc),
            ("ECDHE-ECDSA-AES256-SHA", cbc),
            ("ecdhe-ecdsa-aes256-cbc", cbc),
            ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", None),
            ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", None),
            ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
            ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", None),
            ("TLS_AES_128_GCM_SHA256", None),
            ("", None),
        ] {
            assert_eq!(dtls_suite(name), want, "{name}");
        }
    }
}
