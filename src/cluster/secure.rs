//! `gameraft cluster --secure`: the credentials of a secured local cluster,
//! made on the first run in `<dir>/secure/` and reused after: a cluster CA
//! with a certificate per node (peer TLS), and an admin token with its
//! tokens file (client tokens).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::auth;
use crate::tls::{certs, TlsError};

/// The variable `serve` reads its `--join-token` from.
pub const JOIN_TOKEN_ENV: &str = "GAMERAFT_JOIN_TOKEN";

/// Where a secured local cluster keeps its credentials, and the token that
/// may do everything.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub dir: PathBuf,
    pub admin_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Credentials {
    /// The credentials in `dir`, made there first if missing: the CA, a
    /// certificate for each of nodes 1..=`nodes` on 127.0.0.1, and an admin
    /// token.
    pub fn prepare(dir: &Path, nodes: u16) -> Result<Self, CredentialsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| CredentialsError::Io(path, e)
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if !certs::ca_cert_path(dir).exists() {
            certs::init_ca(dir)?;
        }
        for id in 1..=u64::from(nodes) {
            if !certs::node_cert_path(dir, id).exists() {
                certs::issue_node(dir, id, "127.0.0.1")?;
            }
        }
        let token_path = admin_token_path(dir);
        let admin_token = match std::fs::read_to_string(&token_path) {
            Ok(token) => token.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = auth::new_token();
                let line = format!("admin {} local-admin\n", auth::hash_hex(&token));
                write_private(&tokens_path(dir), &line).map_err(io(&tokens_path(dir)))?;
                write_private(&token_path, &format!("{token}\n")).map_err(io(&token_path))?;
                token
            }
            Err(e) => return Err(CredentialsError::Io(token_path, e)),
        };
        Ok(Self { dir: dir.to_path_buf(), admin_token })
    }

    /// The `serve` flags that secure every node with these credentials
    /// (the join token goes in the environment, `GAMERAFT_JOIN_TOKEN`, out
    /// of `ps`).
    pub fn node_flags(&self) -> Vec<OsString> {
        let flag = |name: &str, value: &Path| OsString::from(format!("--{name}={}", value.display()));
        vec![flag("peer-tls-dir", &self.dir), flag("auth-tokens-file", &tokens_path(&self.dir))]
    }

    pub fn admin_token_path(&self) -> PathBuf {
        admin_token_path(&self.dir)
    }

    pub fn tokens_path(&self) -> PathBuf {
        tokens_path(&self.dir)
    }
}

fn admin_token_path(dir: &Path) -> PathBuf {
    dir.join("admin-token")
}

fn tokens_path(dir: &Path) -> PathBuf {
    dir.join("tokens")
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
