use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::error::Error;

/// Builds a TLS acceptor (rustls, ring provider) from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), offering HTTP/2 and HTTP/1.1 through ALPN.
///
/// ```no_run
/// let acceptor = sse_server::tls_acceptor("cert.pem", "key.pem")?;
/// # drop(acceptor);
/// # Ok::<(), sse_server::Error>(())
/// ```
pub fn tls_acceptor(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsAcceptor, Error> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            Error::Tls(format!(
                "cannot read certificates from {}: {e}; pass a PEM certificate chain",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Tls(format!(
            "cannot read a private key from {}: {e}; pass a PEM private key",
            key.display()
        ))
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("the certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // A lean TLS subscriber keeps only its keys (`transport/record.rs`), taken out of rustls.
    config.enable_secret_extraction = true;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
