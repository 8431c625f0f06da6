//! What browsers call the SRTP profile and the DTLS cipher suite in `getStats()`, compared by
//! meaning rather than by spelling ([`callsec_server::names`]): browser builds rename them.
//! Chromium reported the GCM profile as `AEAD_AES_128_GCM` and, from 156.0.8078.129, as
//! `SRTP_AEAD_AES_128_GCM`; the CM profile as `SRTP_AES128_CM_HMAC_SHA1_80` and as
//! BoringSSL's `AES_CM_128_HMAC_SHA1_80`.

use callsec_dtls::CipherSuite;
use callsec_server::names;
use callsec_srtp::ProtectionProfile;

/// Asserts that a report's `srtpCipher` names `want`, failing with the browser's own string.
pub fn assert_srtp_profile(report: &serde_json::Value, want: ProtectionProfile) {
    let name = report["srtpCipher"].as_str().unwrap_or("<none>");
    assert_eq!(
        names::srtp_profile(name),
        Some(want),
        "the browser's srtpCipher is {name:?}, which does not name {want}: {report}"
    );
}

/// Asserts that a report's `dtlsCipher` names `want`, failing with the browser's own string.
pub fn assert_dtls_suite(report: &serde_json::Value, want: CipherSuite) {
    let name = report["dtlsCipher"].as_str().unwrap_or("<none>");
    assert_eq!(
        names::dtls_suite(name),
        Some(want),
        "the browser's dtlsCipher is {name:?}, which does not name {}: {report}",
        want.name()
    );
}
