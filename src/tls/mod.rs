//! Mutual TLS between peers: every connection to a node's Raft port
//! presents a certificate from the cluster CA, in both directions, and each
//! certificate names the one node it speaks for.
//!
//! ```text
//!  gameraft certs init / node  (certs.rs)  ──> ca.pem, node-<id>.pem, node-<id>-key.pem
//!  --peer-tls-dir ──> PeerTls::load ──> server side: network/listener.rs (handshake, node id of the caller)
//!                                   └─> client side: network/client.rs (Raft RPCs), api/forward.rs (forwards)
//! ```
//!
//! The handshake proves the caller holds a certificate of this cluster;
//! `network/server.rs` then refuses any RPC whose vote names another node
//! than the certificate does, so one node's key cannot act as another.

pub mod certs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::types::NodeId;

/// HTTP/2, the only protocol the Raft port speaks (gRPC and forwards).
const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} exists already: a new CA would make every certificate it issued untrusted")]
    Exists(PathBuf),
    #[error("{0:?} is neither an IP address nor a DNS name")]
    BadHost(String),
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no private key")]
    NoKey(PathBuf),
    #[error("{} holds neither node-{node_id}.pem nor the CA's key to issue it: make it with `gameraft certs node --id {node_id}`, or put ca-key.pem there", dir.display())]
    NoNodeCertificate { dir: PathBuf, node_id: NodeId },
    #[error("{path} is not a certificate for node {expected} (it names {found:?}); make one with `gameraft certs node --id {expected}`")]
    WrongNode { path: PathBuf, expected: NodeId, found: Option<NodeId> },
    #[error("cannot make the certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("invalid TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid CA certificate: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// This node's peer TLS set-up, loaded from `--peer-tls-dir`.
#[derive(Clone)]
pub struct PeerTls {
    ca_pem: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    channel: tonic::transport::ClientTlsConfig,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Loads the CA and node `node_id`'s key and certificate from `dir`
    /// (file names in [`certs`]). Without the node's certificate there, but
    /// with the CA's key, the node issues itself one for `host` (its
    /// advertised host), held in memory only.
    pub fn load(dir: &Path, node_id: NodeId, host: &str) -> Result<Self, TlsError> {
        let ca_path = certs::ca_cert_path(dir);
        let cert_path = certs::node_cert_path(dir, node_id);
        let key_path = certs::node_key_path(dir, node_id);
        let ca_key_path = certs::ca_key_path(dir);
        let ca_pem = certs::read(&ca_path)?;
        let (cert_pem, key_pem) = if cert_path.exists() {
            (certs::read(&cert_path)?, certs::read(&key_path)?)
        } else if ca_key_path.exists() {
            let issued = certs::issue(&ca_pem, &certs::read(&ca_key_path)?, node_id, host)?;
            tracing::info!(node_id, host, dir = %dir.display(), "issued this node's peer certificate with the CA's key");
            (issued.cert_pem, issued.key_pem)
        } else {
            return Err(TlsError::NoNodeCertificate { dir: dir.to_path_buf(), node_id });
        };

        let chain = pem_certs(&cert_path, &cert_pem)?;
        let found = chain.first().and_then(|cert| certified_node_id(cert));
        if found != Some(node_id) {
            return Err(TlsError::WrongNode { path: cert_path, expected: node_id, found });
        }
        let key = pem_key(&key_path, &key_pem)?;
        let mut roots = RootCertStore::empty();
        for ca in pem_certs(&ca_path, &ca_pem)? {
            roots.add(ca)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(provider());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];

        let channel = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem))
            .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem));
        Ok(Self { ca_pem, server: Arc::new(server), client: Arc::new(client), channel })
    }

    /// The cluster CA, PEM: a node joining over HTTPS trusts it.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// For the Raft port's listener: a caller must present a certificate
    /// from the cluster CA.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// For HTTP clients calling a peer (forwards): this node's certificate,
    /// and only the cluster CA trusted.
    pub fn client_config(&self) -> ClientConfig {
        (*self.client).clone()
    }

    /// For the gRPC channels to peers; the same trust as [`Self::client_config`].
    pub fn channel_config(&self) -> tonic::transport::ClientTlsConfig {
        self.channel.clone()
    }
}

/// The HTTPS set-up of the client API (`--http-tls-cert`, `--http-tls-key`):
/// no client certificates (clients show tokens), HTTP/1.1.
pub fn http_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = pem_certs(cert_path, &certs::read(cert_path)?)?;
    let key = pem_key(key_path, &certs::read(key_path)?)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The crypto provider every TLS config here is built with, named rather
/// than taken from the process default.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn pem_certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn pem_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Io(path.to_path_buf(), e))?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}

/// The node id a node certificate names (its `urn:gameraft:node:<id>`
/// URI), if it names exactly one.
pub fn certified_node_id(der: &[u8]) -> Option<NodeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    let mut ids = names.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(certs::NODE_URI_PREFIX)?.parse().ok(),
        _ => None,
    });
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_node_and_loads_only_as_that_node() {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path()).expect("CA");
        let cert_path = certs::issue_node(dir.path(), 7, "127.0.0.1").expect("node 7");
        let pem = std::fs::read_to_string(&cert_path).expect("read");
        let der = pem_certs(&cert_path, &pem).expect("parse").remove(0);
        assert_eq!(certified_node_id(&der), Some(7));

        PeerTls::load(dir.path(), 7, "127.0.0.1").expect("node 7 loads its own certificate");
        std::fs::copy(&cert_path, certs::node_cert_path(dir.path(), 8)).expect("copy");
        std::fs::copy(certs::node_key_path(dir.path(), 7), certs::node_key_path(dir.path(), 8)).expect("copy");
        let err = PeerTls::load(dir.path(), 8, "127.0.0.1").expect_err("node 7's certificate is not node 8's");
        assert!(matches!(err, TlsError::WrongNode { expected: 8, found: Some(7), .. }), "{err}");
    }

    #[test]
    fn with_the_cas_key_and_no_certificate_a_node_issues_its_own_for_its_id_and_host() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = PeerTls::load(dir.path(), 9, "10.0.0.9").expect_err("no CA at all");
        assert!(matches!(err, TlsError::Io(..)), "{err}");
        certs::init_ca(dir.path()).expect("CA");
        PeerTls::load(dir.path(), 9, "10.0.0.9").expect("node 9 issues itself a certificate");
        assert!(!certs::node_cert_path(dir.path(), 9).exists(), "held in memory, not written");

        let issued = certs::issue(
            &certs::read(&certs::ca_cert_path(dir.path())).expect("CA"),
            &certs::read(&certs::ca_key_path(dir.path())).expect("CA key"),
            9,
            "10.0.0.9",
        )
        .expect("issued");
        let der = pem_certs(dir.path(), &issued.cert_pem).expect("parse").remove(0);
        assert_eq!(certified_node_id(&der), Some(9));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
        let names = cert.subject_alternative_name().expect("SAN").expect("SAN present");
        let ip = names.value.general_names.iter().any(
            |name| matches!(name, x509_parser::extensions::GeneralName::IPAddress(bytes) if *bytes == [10, 0, 0, 9]),
        );
        assert!(ip, "the certificate names the host: {:?}", names.value.general_names);

        std::fs::remove_file(certs::ca_key_path(dir.path())).expect("remove the key");
        let err = PeerTls::load(dir.path(), 9, "10.0.0.9").expect_err("neither certificate nor key");
        assert!(matches!(err, TlsError::NoNodeCertificate { node_id: 9, .. }), "{err}");
    }

    #[test]
    fn a_second_ca_in_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path()).expect("CA");
        assert!(matches!(certs::init_ca(dir.path()), Err(TlsError::Exists(_))));
    }

    #[test]
    fn random_bytes_are_no_node_id() {
        assert_eq!(certified_node_id(b"not a certificate"), None);
        assert_eq!(certified_node_id(&[]), None);
    }

    fn a_node_certificate() -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path()).expect("CA");
        let path = certs::issue_node(dir.path(), 3, "node-3.example").expect("node 3");
        pem_certs(&path, &certs::read(&path).expect("read")).expect("parse").remove(0).to_vec()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// A peer's certificate, damaged: reading its node id gives an id or
        /// nothing, never a panic.
        #[test]
        fn damaged_certificates_never_panic_the_node_id_reader(
            changes in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..8,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            static CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let mut der = CERT.get_or_init(a_node_certificate).clone();
            for (at, value) in changes {
                let at = at.index(der.len());
                der[at] = value;
            }
            der.truncate(cut.index(der.len() + 1));
            let _ = certified_node_id(&der);
            let _ = certified_node_id(&noise);
        }
    }
}
