//! The TLS layer: a rustls client configuration from [`TlsConfig`], and the handshake.
//!
//! Certificate and hostname verification are on unless turned off explicitly; both ways of
//! turning them off log a warning at every connection. The system's roots are loaded once per
//! process (reading the trust store costs milliseconds); a CA file is read at every
//! connection, so a rotated file is picked up without a restart.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{TlsConfig, TrustAnchors};
use crate::error::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The system's trust store, loaded once; certificates that do not parse are skipped (as
/// every TLS stack does with a large system store), an empty store is an error.
fn system_roots() -> std::result::Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<std::result::Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let why = loaded.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(format!("no CA certificates in the system trust store{why}; set ssl.ca.location"));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

fn tls_config_error(key: &str, reason: String) -> Error {
    Error::Config { key: key.to_owned(), reason }
}

fn roots(trust: &TrustAnchors) -> Result<Arc<RootCertStore>> {
    let certs: Vec<CertificateDer<'static>> = match trust {
        TrustAnchors::System => return system_roots().map_err(|r| tls_config_error("ssl.ca.location", r)),
        TrustAnchors::PemFile(path) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| tls_config_error("ssl.ca.location", format!("{}: {e}", path.display())))?,
        TrustAnchors::Pem(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_config_error("ssl.ca.pem", e.to_string()))?,
    };
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| tls_config_error("ssl.ca.location", format!("bad CA certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(tls_config_error("ssl.ca.location", "no certificate in the CA file".to_owned()));
    }
    Ok(Arc::new(store))
}

fn client_identity(tls: &TlsConfig) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let certs = if let Some(path) = &tls.certificate_location {
        CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| tls_config_error("ssl.certificate.location", format!("{}: {e}", path.display())))?
    } else if let Some(pem) = &tls.certificate_pem {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_config_error("ssl.certificate.pem", e.to_string()))?
    } else {
        return Ok(None);
    };
    // Key errors never quote the file's content.
    let key = if let Some(path) = &tls.key_location {
        PrivateKeyDer::from_pem_file(path)
            .map_err(|e| tls_config_error("ssl.key.location", format!("{}: {e}", path.display())))?
    } else if let Some(pem) = &tls.key_pem {
        PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
            .map_err(|e| tls_config_error("ssl.key.pem", format!("no usable private key: {e}")))?
    } else {
        return Err(tls_config_error("ssl.key.location", "a client certificate needs its private key".to_owned()));
    };
    if certs.is_empty() {
        return Err(tls_config_error("ssl.certificate.location", "no certificate in the file".to_owned()));
    }
    Ok(Some((certs, key)))
}

/// Builds the rustls configuration for `tls`.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_config_error("security.protocol", e.to_string()))?;
    let builder = if tls.danger_accept_invalid_certificates {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
    } else {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(&tls.trust)?, provider())
            .build()
            .map_err(|e| tls_config_error("ssl.ca.location", e.to_string()))?;
        if tls.verify_hostname {
            builder.with_webpki_verifier(verifier)
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
        }
    };
    let config = match client_identity(tls)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_config_error("ssl.key.location", format!("the key does not fit the certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `tcp`. `host` is what SNI sends and the certificate must
/// name (unless overridden); failures are [`Error::Tls`] with rustls' reason.
pub async fn handshake(tcp: TcpStream, host: &str, tls: &TlsConfig, broker: &str) -> Result<TlsStream<TcpStream>> {
    if tls.danger_accept_invalid_certificates {
        tracing::warn!(
            broker,
            "TLS certificate verification is OFF (enable.ssl.certificate.verification=false): \
             the connection can be intercepted; never use this outside tests"
        );
    } else if !tls.verify_hostname {
        tracing::warn!(
            broker,
            "TLS hostname verification is OFF (ssl.endpoint.identification.algorithm is empty): \
             any certificate from a trusted CA is accepted for this broker"
        );
    }
    let config = client_config(tls)?;
    let name = tls.server_name_override.as_deref().unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| Error::Tls { broker: broker.to_owned(), reason: format!("invalid server name {name:?}: {e}") })?;
    TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| Error::Tls { broker: broker.to_owned(), reason: describe_io(&e) })
}

/// The handshake error with rustls' reason and a hint for the usual mistakes.
fn describe_io(e: &std::io::Error) -> String {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                format!("{e} (the broker closed the connection during the handshake: is this a TLS listener?)")
            }
            _ => e.to_string(),
        };
    };
    let hint = match inner {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the broker's certificate does not chain to a trusted CA: set ssl.ca.location to the CA that signed it)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (the broker's certificate does not name the host connected to)",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            " (the broker may not be speaking TLS: check security.protocol and the port)"
        }
        _ => "",
    };
    format!("{inner}{hint}")
}

/// Chain checked, name not (`ssl.endpoint.identification.algorithm=`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (the handshake signatures are still checked, so the peer holds
/// the key of the certificate it sent, whoever that is).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
