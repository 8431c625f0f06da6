//! Access tokens: JWS compact serialization (RFC 7515) carrying JWT claims (RFC 7519),
//! signed with HS256 or ES256 (RFC 7518 §3.2, §3.4).
//!
//! Claims this crate reads:
//!
//! | claim   | meaning                                   | required |
//! | ------- | ----------------------------------------- | -------- |
//! | `sub`   | user id (RFC 7519 §4.1.2)                 | yes      |
//! | `sid`   | session id                                | yes      |
//! | `rooms` | room ids the holder may join              | yes      |
//! | `aud`   | audience, string or array (RFC 7519 §4.1.3) | yes    |
//! | `exp`   | expiry, seconds since epoch (§4.1.4)      | yes      |
//! | `nbf`   | not before, seconds since epoch (§4.1.5)  | yes      |
//! | `iat`   | issued at (§4.1.6), for user revocation   | no       |
//! | `iss`   | issuer (§4.1.1), checked when configured  | no       |
//!
//! The validator accepts exactly one algorithm, the configured one. A token whose header
//! says `none` or has an empty signature is "unsigned" (RFC 7518 §3.6 unsecured JWS is
//! never accepted); any other algorithm is "wrong algorithm" — the check happens before
//! any key is used, so an HS256 token cannot be verified with an ES256 public key as the
//! HMAC secret (the classic algorithm-confusion attack).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The key that verifies tokens, which also fixes the one accepted algorithm.
#[derive(Clone)]
#[non_exhaustive]
pub enum TokenKey {
    /// HMAC with SHA-256 and a shared secret (RFC 7518 §3.2; at least 32 bytes).
    Hs256 {
        /// The shared secret.
        secret: Vec<u8>,
    },
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4), verified with the host's public key.
    Es256 {
        /// The public key as a PEM `PUBLIC KEY` (SPKI) block.
        public_key_pem: String,
    },
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256 { .. } => f.write_str("Hs256(<secret>)"),
            Self::Es256 { .. } => f.write_str("Es256(<public key>)"),
        }
    }
}

/// How tokens are validated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Verification key (and so the algorithm).
    pub key: TokenKey,
    /// The audience this server is (`aud` must contain it).
    pub audience: String,
    /// The expected issuer, if any (`iss` must equal it).
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl AuthConfig {
    /// A config with the default leeway (30 s) and no issuer check.
    #[must_use]
    pub fn new(key: TokenKey, audience: impl Into<String>) -> Self {
        Self {
            key,
            audience: audience.into(),
            issuer: None,
            leeway: Duration::from_secs(30),
        }
    }
}

/// The validated claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// User id (`sub`).
    pub user_id: String,
    /// Session id (`sid`).
    pub session_id: String,
    /// Rooms the holder may join.
    pub rooms: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Not-before, seconds since the Unix epoch.
    pub not_before: u64,
    /// Issued-at, when present.
    pub issued_at: Option<u64>,
}

impl Claims {
    /// When the token was issued, for user revocation: `iat`, or `nbf` without it.
    #[must_use]
    pub fn issued(&self) -> u64 {
        self.issued_at.unwrap_or(self.not_before)
    }

    /// Whether the token allows `room`.
    #[must_use]
    pub fn allows_room(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r == room)
    }
}

/// Why a token was refused. Each maps to its own WebSocket close code
/// (see [`crate::CloseReason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was presented.
    #[error("token missing")]
    Missing,
    /// Not a JWS compact serialization, bad base64 or JSON, too long, or `crit` present.
    #[error("token malformed")]
    Malformed,
    /// `alg` is `none` or the signature is empty.
    #[error("token unsigned")]
    Unsigned,
    /// `alg` is not the configured algorithm.
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("token signature invalid")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("token claim missing or invalid")]
    MissingClaim,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this server.
    #[error("token audience mismatch")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("token issuer mismatch")]
    WrongIssuer,
    /// The session or user was revoked.
    #[error("session revoked")]
    Revoked,
}

impl TokenError {
    /// A short stable name for the audit log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unsigned => "unsigned",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim => "missing_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Revoked => "revoked",
        }
    }
}

/// A configuration error for [`TokenValidator::new`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// HS256 secrets must be at least 32 bytes (RFC 7518 §3.2: key at least as long as
    /// the hash output).
    #[error("HS256 secret shorter than 32 bytes")]
    ShortSecret,
    /// The ES256 public key PEM could not be parsed.
    #[error("invalid ES256 public key PEM")]
    BadPublicKey,
}

/// Validates access tokens against one key and audience.
pub struct TokenValidator {
    algorithm: Algorithm,
    alg_name: &'static str,
    key: DecodingKey,
    audience: String,
    issuer: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("alg", &self.alg_name)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenValidator {
    /// Builds a validator.
    ///
    /// # Errors
    /// When the key is unusable.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let (algorithm, alg_name, key) = match &config.key {
            TokenKey::Hs256 { secret } => {
                if secret.len() < 32 {
                    return Err(KeyError::ShortSecret);
                }
                (Algorithm::HS256, "HS256", DecodingKey::from_secret(secret))
            }
            TokenKey::Es256 { public_key_pem } => (
                Algorithm::ES256,
                "ES256",
                DecodingKey::from_ec_pem(public_key_pem.as_bytes())
                    .map_err(|_| KeyError::BadPublicKey)?,
            ),
        };
        Ok(Self {
            algorithm,
            alg_name,
            key,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway.as_secs(),
        })
    }

    /// The clock skew allowed on `exp` and `nbf`.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway)
    }

    /// Validates `token` at the current wall-clock time.
    ///
    /// # Errors
    /// The first reason the token is refused.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.validate_at(token, now)
    }

    /// Validates `token` as if the time were `now` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The first reason the token is refused.
    pub fn validate_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        // RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature)
        let mut parts = token.split('.');
        let (Some(header), Some(_payload), signature, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        let header: Header = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        // RFC 7518 §3.6: "none" is an unsecured JWS; never accepted here.
        if header.alg.eq_ignore_ascii_case("none") || signature.is_none_or(str::is_empty) {
            return Err(TokenError::Unsigned);
        }
        if header.alg != self.alg_name {
            return Err(TokenError::WrongAlgorithm);
        }
        // RFC 7515 §4.1.11: we understand no critical extensions.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        // Signature only; every claim is checked below with our own clock and errors.
        let mut validation = Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let raw = jsonwebtoken::decode::<RawClaims>(token, &self.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                ErrorKind::Json(_) => TokenError::MissingClaim,
                _ => TokenError::Malformed,
            })?
            .claims;
        let (Some(sub), Some(sid), Some(rooms), Some(aud), Some(exp), Some(nbf)) =
            (raw.sub, raw.sid, raw.rooms, raw.aud, raw.exp, raw.nbf)
        else {
            return Err(TokenError::MissingClaim);
        };
        if sub.is_empty() || sid.is_empty() {
            return Err(TokenError::MissingClaim);
        }
        // RFC 7519 §4.1.4: reject on or after exp (with leeway).
        if now >= exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        // RFC 7519 §4.1.5: reject before nbf (with leeway).
        if now.saturating_add(self.leeway) < nbf {
            return Err(TokenError::NotYetValid);
        }
        // RFC 7519 §4.1.3: the audience must identify us.
        let aud_ok = match &aud {
            Audience::One(a) => *a == self.audience,
            Audience::Many(list) => list.contains(&self.audience),
        };
        if !aud_ok {
            return Err(TokenError::WrongAudience);
        }
        if self
            .issuer
            .as_ref()
            .is_some_and(|expected| raw.iss.as_ref() != Some(expected))
        {
            return Err(TokenError::WrongIssuer);
        }
        Ok(Claims {
            user_id: sub,
            session_id: sid,
            rooms,
            expires_at: exp,
            not_before: nbf,
            issued_at: raw.iat,
        })
    }
}

/// The JOSE header fields read here (RFC 7515 §4.1).
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims as sent; [`TokenValidator::validate_at`] turns them into [`Claims`].
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    sid: Option<String>,
    rooms: Option<Vec<String>>,
    aud: Option<Audience>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    iss: Option<String>,
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn hs_validator() -> TokenValidator {
        TokenValidator::new(&AuthConfig::new(
            TokenKey::Hs256 {
                secret: SECRET.to_vec(),
            },
            "callsec",
        ))
        .unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"sub":"alice","sid":"s1","rooms":["r1"],"aud":"callsec","exp":NOW+60,"nbf":NOW-1})
    }

    fn hs(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn valid_hs256() {
        let c = hs_validator().validate_at(&hs(&claims()), NOW).unwrap();
        assert_eq!(c.user_id, "alice");
        assert_eq!(c.session_id, "s1");
        assert!(c.allows_room("r1"));
        assert!(!c.allows_room("r2"));
    }

    #[test]
    fn refusals() {
        let v = hs_validator();
        let mut c = claims();
        c["exp"] = json!(NOW - 31);
        assert_eq!(v.validate_at(&hs(&c), NOW), Err(TokenError::Expired));
        c["exp"] = json!(NOW - 29); // within the 30 s leeway
        assert!(v.validate_at(&hs(&c), NOW).is_ok());
        let mut c = claims();
        c["nbf"] = json!(NOW + 31);
        assert_eq!(v.validate_at(&hs(&c), NOW), Err(TokenError::NotYetValid));
        let mut c = claims();
        c["aud"] = json!(["other", "callsec"]);
        assert!(v.validate_at(&hs(&c), NOW).is_ok());
        c["aud"] = json!("other");
        assert_eq!(v.validate_at(&hs(&c), NOW), Err(TokenError::WrongAudience));
        for missing in ["sub", "sid", "rooms", "aud", "exp", "nbf"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(missing);
            assert_eq!(
                v.validate_at(&hs(&c), NOW),
                Err(TokenError::MissingClaim),
                "{missing}"
            );
        }
        let mut c = claims();
        c["exp"] = json!("soon");
        assert_eq!(v.validate_at(&hs(&c), NOW), Err(TokenError::MissingClaim));
    }

    #[test]
    fn unsigned_and_wrong_algorithm() {
        let v = hs_validator();
        let body = b64(&claims());
        let none = format!("{}.{body}.", b64(&json!({"alg":"none"})));
        assert_eq!(v.validate_at(&none, NOW), Err(TokenError::Unsigned));
        let none_caps = format!("{}.{body}.", b64(&json!({"alg":"NoNe"})));
        assert_eq!(v.validate_at(&none_caps, NOW), Err(TokenError::Unsigned));
        let stripped = format!("{}.{body}.", b64(&json!({"alg":"HS256"})));
        assert_eq!(v.validate_at(&stripped, NOW), Err(TokenError::Unsigned));
        let two_parts = format!("{}.{body}", b64(&json!({"alg":"HS256"})));
        assert_eq!(v.validate_at(&two_parts, NOW), Err(TokenError::Unsigned));
        let hs384 = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS384),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(v.validate_at(&hs384, NOW), Err(TokenError::WrongAlgorithm));
        let mut tampered = hs(&claims());
        tampered.push('A');
        assert_eq!(v.validate_at(&tampered, NOW), Err(TokenError::BadSignature));
        let other_secret = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!"),
        )
        .unwrap();
        assert_eq!(
            v.validate_at(&other_secret, NOW),
            Err(TokenError::BadSignature)
        );
        let crit = format!("{}.{body}.c2ln", b64(&json!({"alg":"HS256","crit":["x"]})));
        assert_eq!(v.validate_at(&crit, NOW), Err(TokenError::Malformed));
        assert_eq!(v.validate_at("garbage", NOW), Err(TokenError::Malformed));
        assert_eq!(v.validate_at("", NOW), Err(TokenError::Missing));
        assert_eq!(
            v.validate_at(&"a".repeat(MAX_TOKEN_LEN + 1), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn es256_and_algorithm_confusion() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let public_key_pem = key.public_key_pem();
        let v = TokenValidator::new(&AuthConfig::new(
            TokenKey::Es256 {
                public_key_pem: public_key_pem.clone(),
            },
            "callsec",
        ))
        .unwrap();
        let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        let token =
            jsonwebtoken::encode(&JwtHeader::new(Algorithm::ES256), &claims(), &signing).unwrap();
        assert_eq!(v.validate_at(&token, NOW).unwrap().user_id, "alice");
        // HS256 signed with the public key as the HMAC secret must not pass.
        let confused = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(public_key_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            v.validate_at(&confused, NOW),
            Err(TokenError::WrongAlgorithm)
        );
        // An ES256 token from another key.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let forged = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(v.validate_at(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn issuer_and_short_secret() {
        let mut cfg = AuthConfig::new(
            TokenKey::Hs256 {
                secret: SECRET.to_vec(),
            },
            "callsec",
        );
        cfg.issuer = Some("host".into());
        let v = TokenValidator::new(&cfg).unwrap();
        assert_eq!(
            v.validate_at(&hs(&claims()), NOW),
            Err(TokenError::WrongIssuer)
        );
        let mut c = claims();
        c["iss"] = json!("host");
        assert!(v.validate_at(&hs(&c), NOW).is_ok());
        let short = AuthConfig::new(
            TokenKey::Hs256 {
                secret: b"short".to_vec(),
            },
            "callsec",
        );
        assert!(matches!(
            TokenValidator::new(&short),
            Err(KeyError::ShortSecret)
        ));
    }
}
