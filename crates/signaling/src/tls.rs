//! rustls setup (ring provider only): server identity from PEM files or a generated
//! self-signed certificate, and client configs that trust given certificates.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::Transport;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("reading {what}: {detail}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// Self-signed certificate generation failed.
    #[error("generating self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls client config (TLS 1.2/1.3, ring) trusting exactly `roots`.
///
/// # Errors
/// When a root certificate cannot be parsed.
pub fn client_config(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(store)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server's TLS configuration and, for a self-signed identity, its certificate.
pub(crate) struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) self_signed: Option<CertificateDer<'static>>,
}

/// Builds the rustls server config for `transport`, or `None` for plaintext.
pub(crate) fn server_tls(transport: &Transport) -> Result<Option<ServerTls>, TlsError> {
    let (chain, key, self_signed) = match transport {
        Transport::PlaintextLoopback => return Ok(None),
        Transport::TlsPemFiles {
            cert_chain,
            private_key,
        } => {
            let chain = CertificateDer::pem_file_iter(cert_chain)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| TlsError::Pem {
                    what: "certificate chain",
                    detail: e.to_string(),
                })?;
            if chain.is_empty() {
                return Err(TlsError::Pem {
                    what: "certificate chain",
                    detail: "no CERTIFICATE block".into(),
                });
            }
            let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| TlsError::Pem {
                what: "private key",
                detail: e.to_string(),
            })?;
            (chain, key, None)
        }
        Transport::TlsSelfSigned { names } => {
            let certified = rcgen::generate_simple_self_signed(names.clone())?;
            let der = certified.cert.der().clone();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            ));
            (vec![der.clone()], key, Some(der))
        }
    };
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(ServerTls {
        config: Arc::new(config),
        self_signed,
    }))
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::ServerName;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    #[tokio::test]
    async fn tls12_and_tls13_clients_complete_handshakes() {
        let transport = Transport::TlsSelfSigned {
            names: vec!["localhost".into()],
        };
        let server = server_tls(&transport).unwrap().unwrap();
        let cert = server.self_signed.clone().unwrap();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let mut roots = RootCertStore::empty();
            roots.add(cert.clone()).unwrap();
            let client =
                rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let (a, b) = tokio::io::duplex(64 * 1024);
            let acceptor = TlsAcceptor::from(Arc::clone(&server.config));
            let connector = TlsConnector::from(Arc::new(client));
            let name = ServerName::try_from("localhost").unwrap();
            let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
            s.unwrap();
            assert_eq!(
                c.unwrap().get_ref().1.protocol_version(),
                Some(version.version)
            );
        }
    }

    #[test]
    fn pem_errors_and_plaintext() {
        assert!(server_tls(&Transport::PlaintextLoopback).unwrap().is_none());
        let missing = Transport::TlsPemFiles {
            cert_chain: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
        };
        assert!(matches!(
            server_tls(&missing),
            Err(TlsError::Pem {
                what: "certificate chain",
                ..
            })
        ));
        let dir = std::env::temp_dir().join(format!("callsec-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        std::fs::write(dir.join("other.pem"), other.serialize_pem()).unwrap();
        let no_key = Transport::TlsPemFiles {
            cert_chain: dir.join("cert.pem"),
            private_key: dir.join("empty.pem"),
        };
        assert!(matches!(
            server_tls(&no_key),
            Err(TlsError::Pem {
                what: "private key",
                ..
            })
        ));
        let mismatched = Transport::TlsPemFiles {
            cert_chain: dir.join("cert.pem"),
            private_key: dir.join("other.pem"),
        };
        assert!(matches!(server_tls(&mismatched), Err(TlsError::Rustls(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
