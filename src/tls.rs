//! TLS for the listener: the certificate and key files (`server.tls`), the rustls acceptor built
//! from them (ALPN h2 and http/1.1), and its reloading without a restart ([`TlsReloader`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `server.tls`: the PEM certificate chain and private key, validated present by config.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `server.tls.reload_interval`, default 10s: how often the files are read again and, when
    /// their contents changed, loaded for new handshakes (SIGHUP does it at once); `None`
    /// ("0s"): only on SIGHUP.
    pub reload_interval: Option<Duration>,
}

/// Builds the TLS acceptor from PEM files; the error names the file at fault.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (cert, key) = read_tls_files(files)?;
    acceptor_from_pem(files, &cert, &key)
}

fn read_tls_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert = std::fs::read(&files.cert)
        .map_err(|e| format!("server.tls.cert {}: {e}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .map_err(|e| format!("server.tls.key {}: {e}", files.key.display()))?;
    Ok((cert, key))
}

fn acceptor_from_pem(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls.cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert {}: no certificate found",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("server.tls.key {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The TLS certificate and key in use, replaced without a restart: on SIGHUP
/// ([`TlsReloader::reload`]) and when `server.tls.reload_interval` finds the files changed.
/// New handshakes get the new pair; open connections keep the one they started with. A pair
/// that does not load (half-written files, a key that does not fit) leaves the old one in use.
pub struct TlsReloader {
    files: TlsFiles,
    /// The acceptor and a SHA-256 of the files it was built from (not the key itself).
    current: std::sync::RwLock<(tokio_rustls::TlsAcceptor, [u8; 32])>,
}

impl TlsReloader {
    /// Loads the pair at start; fails as [`tls_acceptor`] does.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let (cert, key) = read_tls_files(files)?;
        let acceptor = acceptor_from_pem(files, &cert, &key)?;
        Ok(Self {
            files: files.clone(),
            current: std::sync::RwLock::new((acceptor, fingerprint(&cert, &key))),
        })
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.0.clone()
    }

    /// Reads the files again; `Ok(true)` when their contents changed and the new pair is in
    /// use, `Ok(false)` when they are as loaded, `Err` (the old pair stays) when they do not load.
    pub fn reload(&self) -> Result<bool, String> {
        let (cert, key) = read_tls_files(&self.files)?;
        let print = fingerprint(&cert, &key);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == print {
            return Ok(false);
        }
        let acceptor = acceptor_from_pem(&self.files, &cert, &key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (acceptor, print);
        Ok(true)
    }

    /// Reloads every `server.tls.reload_interval`, logging what happened.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.reload_logged("files changed");
        }
    }

    /// [`TlsReloader::reload`], logged: info when a new pair is in use, error when it failed.
    pub fn reload_logged(&self, why: &str) -> bool {
        match self.reload() {
            Ok(true) => {
                tracing::info!(
                    why,
                    "tls: new certificate and key in use for new connections"
                );
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(why, error = %e, "tls: reload failed; the previous certificate stays in use");
                false
            }
        }
    }
}

fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}
