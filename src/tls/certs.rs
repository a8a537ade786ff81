//! `gameraft certs`: a cluster CA and the certificates it issues to nodes.
//!
//! A certificate directory holds the CA (`ca.pem`, and `ca-key.pem`, which
//! only the machine that issues certificates needs) and one key and
//! certificate per node (`node-<id>.pem`, `node-<id>-key.pem`). A node's
//! `--peer-tls-dir` holding the CA's key instead of the node's certificate
//! makes the node issue its own at start ([`issue`]), for identical tasks
//! that learn their id and address only then. A node
//! certificate names the node's host (DNS name or IP address, checked by
//! the peer that connects to it) and its node id, as the URI
//! `urn:gameraft:node:<id>` ([`super::certified_node_id`] reads it back).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::TlsError;
use crate::types::NodeId;

/// The URI a node certificate carries, before the node id.
pub(crate) const NODE_URI_PREFIX: &str = "urn:gameraft:node:";

/// How long the CA and a node certificate are valid, in years from now.
const CA_YEARS: i32 = 10;
const NODE_YEARS: i32 = 5;

/// File names inside a certificate directory.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca-key.pem")
}
pub fn node_cert_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{id}.pem"))
}
pub fn node_key_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{id}-key.pem"))
}

/// Makes a new cluster CA in `dir` (created if missing). Refuses to replace
/// an existing one: every certificate it issued would stop being trusted.
pub fn init_ca(dir: &Path) -> Result<PathBuf, TlsError> {
    let cert_path = ca_cert_path(dir);
    if cert_path.exists() {
        return Err(TlsError::Exists(cert_path));
    }
    fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.to_path_buf(), e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "gameraft cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_YEARS);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_new(&ca_key_path(dir), &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(cert_path)
}

/// A node's certificate and its key, PEM.
pub struct NodeCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Issues node `id` a key and a certificate for `host`, signed by the CA in
/// `dir`, into `dir`. Returns the certificate's path.
pub fn issue_node(dir: &Path, id: NodeId, host: &str) -> Result<PathBuf, TlsError> {
    let issued = issue(&read(&ca_cert_path(dir))?, &read(&ca_key_path(dir))?, id, host)?;
    let cert_path = node_cert_path(dir, id);
    write_replacing(&node_key_path(dir, id), &issued.key_pem, 0o600)?;
    write_replacing(&cert_path, &issued.cert_pem, 0o644)?;
    Ok(cert_path)
}

/// A new key and certificate for node `id` at `host`, signed by the CA
/// (`ca_pem` and its key `ca_key_pem`).
pub fn issue(ca_pem: &str, ca_key_pem: &str, id: NodeId, host: &str) -> Result<NodeCertificate, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca = CertificateParams::from_ca_cert_pem(ca_pem)?.self_signed(&ca_key)?;

    let host_name = match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().map_err(|_| TlsError::BadHost(host.to_string()))?),
    };
    let node_uri = format!("{NODE_URI_PREFIX}{id}");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("gameraft node {id}"));
    params.subject_alt_names = vec![host_name, SanType::URI(node_uri.as_str().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Every node is both: it serves its peers and calls them.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut params, NODE_YEARS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(NodeCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// From the start of last year (clocks differ between machines) to `years`
/// from now.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Whole years are enough here; 365.2425 days per year.
    let this_year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(this_year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(this_year + years, 1, 1);
}

pub(crate) fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|e| TlsError::Io(path.to_path_buf(), e))
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    write_with(path, contents, &options)
}

fn write_replacing(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(mode);
    write_with(path, contents, &options)
}

fn write_with(path: &Path, contents: &str, options: &fs::OpenOptions) -> Result<(), TlsError> {
    let mut file = options.open(path).map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| TlsError::Io(path.to_path_buf(), e))
}
