//! Handshake messages (RFC 5246 §7.4, RFC 6347 §4.2, RFC 8422 §5) and hello extensions.
//!
//! Handshake header (RFC 6347 §4.2.2), 12 bytes before every fragment:
//!
//! ```text
//! +--------+--------------------------+-----------------+
//! | type   | length (24)              | message_seq(16) |
//! +--------+--------------------------+-----------------+
//! | fragment_offset (24)     | fragment_length (24)     |
//! +--------------------------+--------------------------+
//! ```

use crate::codec::{Reader, begin_len16, patch_len16, put_u24, put_vec8, put_vec16, put_vec24};
use crate::error::Error;

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandshakeType(pub(crate) u8);

impl HandshakeType {
    pub(crate) const HELLO_REQUEST: Self = Self(0);
    pub(crate) const CLIENT_HELLO: Self = Self(1);
    pub(crate) const SERVER_HELLO: Self = Self(2);
    pub(crate) const HELLO_VERIFY_REQUEST: Self = Self(3);
    pub(crate) const CERTIFICATE: Self = Self(11);
    pub(crate) const SERVER_KEY_EXCHANGE: Self = Self(12);
    pub(crate) const CERTIFICATE_REQUEST: Self = Self(13);
    pub(crate) const SERVER_HELLO_DONE: Self = Self(14);
    pub(crate) const CERTIFICATE_VERIFY: Self = Self(15);
    pub(crate) const CLIENT_KEY_EXCHANGE: Self = Self(16);
    pub(crate) const FINISHED: Self = Self(20);
}

/// Handshake header length.
pub(crate) const HS_HEADER_LEN: usize = 12;

/// The handshake header of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HsHeader {
    pub(crate) msg_type: HandshakeType,
    pub(crate) length: u32,
    pub(crate) message_seq: u16,
    pub(crate) fragment_offset: u32,
    pub(crate) fragment_length: u32,
}

impl HsHeader {
    /// Reads a header and its fragment bytes.
    pub(crate) fn read<'a>(r: &mut Reader<'a>) -> Result<(Self, &'a [u8]), Error> {
        let h = Self {
            msg_type: HandshakeType(r.u8()?),
            length: r.u24()?,
            message_seq: r.u16()?,
            fragment_offset: r.u24()?,
            fragment_length: r.u24()?,
        };
        let body = r.take(h.fragment_length as usize)?;
        Ok((h, body))
    }

    /// Writes the header.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.msg_type.0);
        put_u24(out, self.length as usize);
        out.extend_from_slice(&self.message_seq.to_be_bytes());
        put_u24(out, self.fragment_offset as usize);
        put_u24(out, self.fragment_length as usize);
    }
}

/// A whole message as it enters the transcript (RFC 6347 §4.2.6: as if sent in one fragment).
pub(crate) fn transcript_bytes(out: &mut Vec<u8>, msg_type: HandshakeType, seq: u16, body: &[u8]) {
    let len = body.len() as u32;
    HsHeader {
        msg_type,
        length: len,
        message_seq: seq,
        fragment_offset: 0,
        fragment_length: len,
    }
    .write(out);
    out.extend_from_slice(body);
}

/// Cipher suite code points (RFC 5289 §3.2, RFC 8422 §6).
pub(crate) const TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: u16 = 0xc02b;
pub(crate) const TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: u16 = 0xc00a;
/// RFC 5746 §3.3: the signalling cipher suite value.
pub(crate) const TLS_EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;
/// RFC 8422 §5.1.1: secp256r1.
pub(crate) const SECP256R1: u16 = 23;
/// RFC 8446 §4.2.3 / RFC 5246 §7.4.1.4.1: ecdsa_secp256r1_sha256 (hash sha256 = 4, ecdsa = 3).
pub(crate) const ECDSA_SECP256R1_SHA256: u16 = 0x0403;
/// RFC 8422 §5.4: ECCurveType named_curve.
pub(crate) const NAMED_CURVE: u8 = 3;
/// RFC 8422 §5.1.2: uncompressed point format.
pub(crate) const POINT_UNCOMPRESSED: u8 = 0;
/// RFC 5246 §7.4.4 / RFC 8422 §5.5: ClientCertificateType ecdsa_sign.
pub(crate) const ECDSA_SIGN: u8 = 64;

/// Extension types.
pub(crate) mod ext {
    /// RFC 8422 §5.1.1 (was elliptic_curves).
    pub(crate) const SUPPORTED_GROUPS: u16 = 10;
    /// RFC 8422 §5.1.2.
    pub(crate) const EC_POINT_FORMATS: u16 = 11;
    /// RFC 5246 §7.4.1.4.1.
    pub(crate) const SIGNATURE_ALGORITHMS: u16 = 13;
    /// RFC 5764 §4.1.1.
    pub(crate) const USE_SRTP: u16 = 14;
    /// RFC 7627 §5.1.
    pub(crate) const EXTENDED_MASTER_SECRET: u16 = 23;
    /// RFC 5746 §3.2.
    pub(crate) const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// The hello extensions callsec understands; everything else is only recorded by type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extensions {
    pub(crate) supported_groups: Option<Vec<u16>>,
    pub(crate) point_formats: Option<Vec<u8>>,
    pub(crate) signature_algorithms: Option<Vec<u16>>,
    /// use_srtp: profiles and MKI (RFC 5764 §4.1.1).
    pub(crate) use_srtp: Option<(Vec<u16>, Vec<u8>)>,
    pub(crate) extended_master_secret: bool,
    pub(crate) renegotiation_info: Option<Vec<u8>>,
    /// Every extension type seen, in order.
    pub(crate) types: Vec<u16>,
}

impl Extensions {
    /// Most extensions a hello may carry before it is refused.
    const MAX: usize = 64;

    /// Reads `Extension extensions<0..2^16-1>` (RFC 5246 §7.4.1.2), absent when nothing is left.
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut out = Self::default();
        if r.remaining() == 0 {
            return Ok(out);
        }
        let mut list = Reader::new(r.vec16(0)?);
        while list.remaining() > 0 {
            let ty = list.u16()?;
            let data = list.vec16(0)?;
            // RFC 5246 §7.4.1.4: no more than one extension of the same type.
            if out.types.contains(&ty) {
                return Err(Error::IllegalParameter("duplicate extension"));
            }
            if out.types.len() == Self::MAX {
                return Err(Error::Decode("too many extensions"));
            }
            out.types.push(ty);
            let mut d = Reader::new(data);
            match ty {
                ext::SUPPORTED_GROUPS => out.supported_groups = Some(d.u16_list(2)?),
                ext::EC_POINT_FORMATS => out.point_formats = Some(d.vec8(1)?.to_vec()),
                ext::SIGNATURE_ALGORITHMS => out.signature_algorithms = Some(d.u16_list(2)?),
                ext::USE_SRTP => {
                    let profiles = d.u16_list(2)?;
                    let mki = d.vec8(0)?.to_vec();
                    out.use_srtp = Some((profiles, mki));
                }
                ext::EXTENDED_MASTER_SECRET => out.extended_master_secret = true,
                ext::RENEGOTIATION_INFO => out.renegotiation_info = Some(d.vec8(0)?.to_vec()),
                _ => {
                    d.take_rest();
                }
            }
            d.expect_empty()?;
        }
        Ok(out)
    }

    /// Writes the extensions block.
    fn write(&self, out: &mut Vec<u8>) {
        let at = begin_len16(out);
        let mut put = |ty: u16, body: &[u8]| {
            out.extend_from_slice(&ty.to_be_bytes());
            put_vec16(out, body);
        };
        if let Some(groups) = &self.supported_groups {
            put(ext::SUPPORTED_GROUPS, &u16_list(groups));
        }
        if let Some(formats) = &self.point_formats {
            let mut b = Vec::new();
            put_vec8(&mut b, formats);
            put(ext::EC_POINT_FORMATS, &b);
        }
        if let Some(algs) = &self.signature_algorithms {
            put(ext::SIGNATURE_ALGORITHMS, &u16_list(algs));
        }
        if let Some((profiles, mki)) = &self.use_srtp {
            let mut b = u16_list(profiles);
            put_vec8(&mut b, mki);
            put(ext::USE_SRTP, &b);
        }
        if self.extended_master_secret {
            put(ext::EXTENDED_MASTER_SECRET, &[]);
        }
        if let Some(ri) = &self.renegotiation_info {
            let mut b = Vec::new();
            put_vec8(&mut b, ri);
            put(ext::RENEGOTIATION_INFO, &b);
        }
        patch_len16(out, at);
    }
}

fn u16_list(v: &[u16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + 2 * v.len());
    b.extend_from_slice(&((2 * v.len()) as u16).to_be_bytes());
    for x in v {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b
}

/// ClientHello (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2):
///
/// ```text
/// client_version(2) random(32) session_id<0..32> cookie<0..2^8-1>
/// cipher_suites<2..2^16-2> compression_methods<1..2^8-1> extensions<0..2^16-1>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientHello {
    pub(crate) client_version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cookie: Vec<u8>,
    pub(crate) cipher_suites: Vec<u16>,
    pub(crate) compression_methods: Vec<u8>,
    pub(crate) extensions: Extensions,
}

impl ClientHello {
    /// Parses a ClientHello body.
    pub(crate) fn read(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let client_version = r.u16()?;
        let random = r.array()?;
        let session_id = r.vec8(0)?;
        if session_id.len() > 32 {
            return Err(Error::Decode("session_id too long"));
        }
        let cookie = r.vec8(0)?.to_vec();
        let cipher_suites = r.u16_list(2)?;
        let compression_methods = r.vec8(1)?.to_vec();
        let extensions = Extensions::read(&mut r)?;
        r.expect_empty()?;
        Ok(Self {
            client_version,
            random,
            session_id: session_id.to_vec(),
            cookie,
            cipher_suites,
            compression_methods,
            extensions,
        })
    }

    /// Encodes the body.
    pub(crate) fn write(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(&self.client_version.to_be_bytes());
        out.extend_from_slice(&self.random);
        put_vec8(&mut out, &self.session_id);
        put_vec8(&mut out, &self.cookie);
        out.extend_from_slice(&u16_list(&self.cipher_suites));
        put_vec8(&mut out, &self.compression_methods);
        self.extensions.write(&mut out);
        out
    }
}

/// ServerHello (RFC 5246 §7.4.1.3):
///
/// ```text
/// server_version(2) random(32) session_id<0..32> cipher_suite(2) compression_method(1)
/// extensions<0..2^16-1>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerHello {
    pub(crate) server_version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cipher_suite: u16,
    pub(crate) compression_method: u8,
    pub(crate) extensions: Extensions,
}

impl ServerHello {
    pub(crate) fn read(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let server_version = r.u16()?;
        let random = r.array()?;
        let session_id = r.vec8(0)?;
        if session_id.len() > 32 {
            return Err(Error::Decode("session_id too long"));
        }
        let cipher_suite = r.u16()?;
        let compression_method = r.u8()?;
        let extensions = Extensions::read(&mut r)?;
        r.expect_empty()?;
        Ok(Self {
            server_version,
            random,
            session_id: session_id.to_vec(),
            cipher_suite,
            compression_method,
            extensions,
        })
    }

    pub(crate) fn write(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(100);
        out.extend_from_slice(&self.server_version.to_be_bytes());
        out.extend_from_slice(&self.random);
        put_vec8(&mut out, &self.session_id);
        out.extend_from_slice(&self.cipher_suite.to_be_bytes());
        out.push(self.compression_method);
        self.extensions.write(&mut out);
        out
    }
}

/// HelloVerifyRequest (RFC 6347 §4.2.1): `server_version(2) cookie<0..2^8-1>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelloVerifyRequest {
    pub(crate) server_version: u16,
    pub(crate) cookie: Vec<u8>,
}

impl HelloVerifyRequest {
    pub(crate) fn read(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let server_version = r.u16()?;
        let cookie = r.vec8(0)?.to_vec();
        r.expect_empty()?;
        Ok(Self {
            server_version,
            cookie,
        })
    }

    pub(crate) fn write(&self) -> Vec<u8> {
        let mut out = self.server_version.to_be_bytes().to_vec();
        put_vec8(&mut out, &self.cookie);
        out
    }
}

/// Certificate (RFC 5246 §7.4.2): `ASN.1Cert certificate_list<0..2^24-1>`, each
/// `opaque ASN.1Cert<1..2^24-1>`.
pub(crate) fn read_certificate(body: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    const MAX_CERTS: usize = 8;
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.vec24(0)?);
    r.expect_empty()?;
    let mut out = Vec::new();
    while list.remaining() > 0 {
        if out.len() == MAX_CERTS {
            return Err(Error::Decode("certificate chain too long"));
        }
        out.push(list.vec24(1)?.to_vec());
    }
    Ok(out)
}

pub(crate) fn write_certificate(chain: &[&[u8]]) -> Vec<u8> {
    let mut inner = Vec::new();
    for c in chain {
        put_vec24(&mut inner, c);
    }
    let mut out = Vec::with_capacity(inner.len() + 3);
    put_vec24(&mut out, &inner);
    out
}

/// ServerKeyExchange for ECDHE_ECDSA (RFC 8422 §5.4, RFC 5246 §7.4.3):
///
/// ```text
/// ServerECDHParams: curve_type(1)=named_curve named_curve(2) public<1..2^8-1>
/// DigitallySigned:  SignatureAndHashAlgorithm(2) signature<0..2^16-1>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerKeyExchange {
    pub(crate) named_curve: u16,
    pub(crate) public: Vec<u8>,
    pub(crate) scheme: u16,
    pub(crate) signature: Vec<u8>,
}

impl ServerKeyExchange {
    pub(crate) fn read(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        if r.u8()? != NAMED_CURVE {
            return Err(Error::IllegalParameter("curve type not named_curve"));
        }
        let named_curve = r.u16()?;
        let public = r.vec8(1)?.to_vec();
        let scheme = r.u16()?;
        let signature = r.vec16(0)?.to_vec();
        r.expect_empty()?;
        Ok(Self {
            named_curve,
            public,
            scheme,
            signature,
        })
    }

    /// The signed params: `curve_type + named_curve + public` (RFC 8422 §5.4).
    pub(crate) fn params(named_curve: u16, public: &[u8]) -> Vec<u8> {
        let mut out = vec![NAMED_CURVE];
        out.extend_from_slice(&named_curve.to_be_bytes());
        put_vec8(&mut out, public);
        out
    }

    pub(crate) fn write(&self) -> Vec<u8> {
        let mut out = Self::params(self.named_curve, &self.public);
        out.extend_from_slice(&self.scheme.to_be_bytes());
        put_vec16(&mut out, &self.signature);
        out
    }
}

/// CertificateRequest (RFC 5246 §7.4.4):
///
/// ```text
/// certificate_types<1..2^8-1> supported_signature_algorithms<2..2^16-2>
/// certificate_authorities<0..2^16-1>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateRequest {
    pub(crate) certificate_types: Vec<u8>,
    pub(crate) signature_algorithms: Vec<u16>,
}

impl CertificateRequest {
    pub(crate) fn read(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let certificate_types = r.vec8(1)?.to_vec();
        let signature_algorithms = r.u16_list(2)?;
        let _authorities = r.vec16(0)?;
        r.expect_empty()?;
        Ok(Self {
            certificate_types,
            signature_algorithms,
        })
    }

    pub(crate) fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_vec8(&mut out, &self.certificate_types);
        out.extend_from_slice(&u16_list(&self.signature_algorithms));
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// ClientKeyExchange for ECDHE (RFC 8422 §5.7): `ecdh_Yc<1..2^8-1>`.
pub(crate) fn read_client_key_exchange(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = Reader::new(body);
    let public = r.vec8(1)?.to_vec();
    r.expect_empty()?;
    Ok(public)
}

pub(crate) fn write_client_key_exchange(public: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(public.len() + 1);
    put_vec8(&mut out, public);
    out
}

/// CertificateVerify / DigitallySigned (RFC 5246 §7.4.8, §4.7):
/// `SignatureAndHashAlgorithm(2) signature<0..2^16-1>`.
pub(crate) fn read_digitally_signed(body: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    let mut r = Reader::new(body);
    let scheme = r.u16()?;
    let sig = r.vec16(0)?.to_vec();
    r.expect_empty()?;
    Ok((scheme, sig))
}

pub(crate) fn write_digitally_signed(scheme: u16, sig: &[u8]) -> Vec<u8> {
    let mut out = scheme.to_be_bytes().to_vec();
    put_vec16(&mut out, sig);
    out
}

/// Finished (RFC 5246 §7.4.9): `verify_data[12]`.
pub(crate) fn read_finished(body: &[u8]) -> Result<[u8; 12], Error> {
    let mut r = Reader::new(body);
    let v = r.array()?;
    r.expect_empty()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_extensions() -> Extensions {
        Extensions {
            supported_groups: Some(vec![SECP256R1]),
            point_formats: Some(vec![POINT_UNCOMPRESSED]),
            signature_algorithms: Some(vec![ECDSA_SECP256R1_SHA256]),
            use_srtp: Some((vec![7, 1], vec![])),
            extended_master_secret: true,
            renegotiation_info: Some(vec![]),
            types: vec![
                ext::SUPPORTED_GROUPS,
                ext::EC_POINT_FORMATS,
                ext::SIGNATURE_ALGORITHMS,
                ext::USE_SRTP,
                ext::EXTENDED_MASTER_SECRET,
                ext::RENEGOTIATION_INFO,
            ],
        }
    }

    /// Every prefix of a valid body must fail to parse, never panic.
    fn truncations_fail<T>(body: &[u8], parse: impl Fn(&[u8]) -> Result<T, Error>) {
        truncations_fail_but(body, None, parse)
    }

    /// As `truncations_fail`, except at `ok_at` (a hello without its extensions block).
    fn truncations_fail_but<T>(
        body: &[u8],
        ok_at: Option<usize>,
        parse: impl Fn(&[u8]) -> Result<T, Error>,
    ) {
        for n in 0..body.len() {
            if Some(n) == ok_at {
                continue;
            }
            assert!(parse(&body[..n]).is_err(), "prefix {n} parsed");
        }
        let mut long = body.to_vec();
        long.push(0);
        assert!(parse(&long).is_err(), "trailing byte accepted");
    }

    #[test]
    fn client_hello_round_trip() {
        let ch = ClientHello {
            client_version: 0xfefd,
            random: [3; 32],
            session_id: vec![],
            cookie: vec![9; 20],
            cipher_suites: vec![
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
            ],
            compression_methods: vec![0],
            extensions: sample_extensions(),
        };
        let body = ch.write();
        assert_eq!(ClientHello::read(&body).unwrap(), ch);
        // version, random, session_id, cookie, suites, compression: then the extensions.
        let no_ext = 2 + 32 + 1 + 21 + 6 + 2;
        truncations_fail_but(&body, Some(no_ext), ClientHello::read);
        // No extensions block at all is allowed.
        let mut bare = ch.clone();
        bare.extensions = Extensions::default();
        let mut body = bare.write();
        body.truncate(body.len() - 2);
        assert_eq!(
            ClientHello::read(&body).unwrap().extensions,
            Extensions::default()
        );
    }

    #[test]
    fn duplicate_extension_is_refused() {
        let mut body = Vec::new();
        let at = begin_len16(&mut body);
        for _ in 0..2 {
            body.extend_from_slice(&ext::EXTENDED_MASTER_SECRET.to_be_bytes());
            body.extend_from_slice(&[0, 0]);
        }
        patch_len16(&mut body, at);
        assert!(matches!(
            Extensions::read(&mut Reader::new(&body)),
            Err(Error::IllegalParameter(_))
        ));
    }

    #[test]
    fn server_messages_round_trip() {
        let sh = ServerHello {
            server_version: 0xfefd,
            random: [4; 32],
            session_id: vec![1, 2],
            cipher_suite: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            compression_method: 0,
            extensions: sample_extensions(),
        };
        let body = sh.write();
        assert_eq!(ServerHello::read(&body).unwrap(), sh);
        truncations_fail_but(&body, Some(2 + 32 + 3 + 2 + 1), ServerHello::read);

        let hvr = HelloVerifyRequest {
            server_version: 0xfefd,
            cookie: vec![1; 32],
        };
        assert_eq!(HelloVerifyRequest::read(&hvr.write()).unwrap(), hvr);
        truncations_fail(&hvr.write(), HelloVerifyRequest::read);

        let ske = ServerKeyExchange {
            named_curve: SECP256R1,
            public: vec![4; 65],
            scheme: ECDSA_SECP256R1_SHA256,
            signature: vec![0x30; 70],
        };
        assert_eq!(ServerKeyExchange::read(&ske.write()).unwrap(), ske);
        truncations_fail(&ske.write(), ServerKeyExchange::read);

        let cr = CertificateRequest {
            certificate_types: vec![ECDSA_SIGN],
            signature_algorithms: vec![ECDSA_SECP256R1_SHA256],
        };
        assert_eq!(CertificateRequest::read(&cr.write()).unwrap(), cr);
        truncations_fail(&cr.write(), CertificateRequest::read);

        let chain = write_certificate(&[b"abc", b"de"]);
        assert_eq!(
            read_certificate(&chain).unwrap(),
            vec![b"abc".to_vec(), b"de".to_vec()]
        );
        truncations_fail(&chain, read_certificate);
        assert!(read_certificate(&write_certificate(&[b""])).is_err());

        let cke = write_client_key_exchange(&[4; 65]);
        assert_eq!(read_client_key_exchange(&cke).unwrap(), vec![4; 65]);
        truncations_fail(&cke, read_client_key_exchange);

        let cv = write_digitally_signed(ECDSA_SECP256R1_SHA256, &[1, 2, 3]);
        assert_eq!(
            read_digitally_signed(&cv).unwrap(),
            (ECDSA_SECP256R1_SHA256, vec![1, 2, 3])
        );
        truncations_fail(&cv, read_digitally_signed);

        assert_eq!(read_finished(&[7; 12]).unwrap(), [7; 12]);
        truncations_fail(&[7; 12], read_finished);
    }

    #[test]
    fn header_round_trip() {
        let h = HsHeader {
            msg_type: HandshakeType::FINISHED,
            length: 12,
            message_seq: 5,
            fragment_offset: 4,
            fragment_length: 3,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(b"abc");
        let (back, body) = HsHeader::read(&mut Reader::new(&out)).unwrap();
        assert_eq!((back, body), (h, &b"abc"[..]));
        assert!(HsHeader::read(&mut Reader::new(&out[..out.len() - 1])).is_err());
    }
}
