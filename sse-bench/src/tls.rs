//! TLS for the `idle-tls`, `max-tls` and `max-h2tls` scenarios: a certificate authority and a
//! `localhost` / `127.0.0.1` server certificate made at bench time (rcgen), written as PEM files for
//! the server, and the rustls client the load side trusts it with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::Error;

/// The server certificate and key, as PEM files in a directory of their own.
#[derive(Debug)]
pub struct BenchCert {
    /// The PEM certificate chain (leaf, then the CA).
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
    ca: CertificateDer<'static>,
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Server(format!("cannot make the bench TLS certificate: {e}"))
}

impl BenchCert {
    /// Makes a CA and a server certificate for `localhost` and `127.0.0.1` signed by it, and writes
    /// `cert.pem` and `key.pem` into `dir`.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("sse-bench-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let cert = sse_bench::tls::BenchCert::generate(&dir).unwrap();
    /// assert!(std::fs::read_to_string(&cert.cert).unwrap().contains("BEGIN CERTIFICATE"));
    /// let _client = cert.client().unwrap();
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn generate(dir: &Path) -> Result<BenchCert, Error> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sse-bench CA");
        let ca_key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let ca = ca_params.self_signed(&ca_key).map_err(tls_err)?;
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(tls_err)?;
        let leaf_key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .map_err(tls_err)?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem()))?;
        std::fs::write(&key, leaf_key.serialize_pem())?;
        Ok(BenchCert {
            cert,
            key,
            ca: ca.der().clone(),
        })
    }

    /// The client side: trusts only this certificate's CA.
    pub fn client(&self) -> Result<Client, Error> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(tls_err)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |alpn: &[u8]| -> Result<Arc<ClientConfig>, Error> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(tls_err)?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        Ok(Client {
            name: ServerName::try_from("localhost").map_err(tls_err)?,
            h1: TlsConnector::from(config(b"http/1.1")?),
            h2: TlsConnector::from(config(b"h2")?),
        })
    }
}

/// TLS connectors for the subscribers: ALPN `http/1.1` or `h2`.
#[derive(Clone)]
pub struct Client {
    name: ServerName<'static>,
    h1: TlsConnector,
    h2: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tls::Client")
    }
}

impl Client {
    /// Runs the TLS handshake on `sock` offering ALPN `http/1.1`.
    pub async fn connect_h1(&self, sock: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        Ok(self.h1.connect(self.name.clone(), sock).await?)
    }

    /// Runs the TLS handshake on `sock` offering ALPN `h2`; fails if the server did not pick h2.
    pub async fn connect_h2(&self, sock: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        let tls = self.h2.connect(self.name.clone(), sock).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Error::Http("the server did not choose ALPN h2".into()));
        }
        Ok(tls)
    }
}
