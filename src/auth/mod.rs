//! Client authentication: bearer tokens with roles.
//!
//! A tokens file (`--auth-tokens-file`) holds one line per token:
//! `<role> <sha256 of the token, hex> <name>`; `#` starts a comment. Only the
//! hash is stored, so the file does not hold usable secrets. A request
//! presents `Authorization: Bearer <token>`; its SHA-256 is compared with
//! every line's, in constant time, and the request gets that line's role.
//! Roles are ordered: `read` < `write` < `admin`, each including the ones
//! before. Without a tokens file every request is allowed (the local
//! cluster's default).
//!
//! `gameraft token new` draws a token and prints it with its line.

mod tokens;

use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub use tokens::{hash_hex, new_token, Caller, Role, TokenFileError, Tokens};

use crate::locks::{read, write};

/// The tokens a running node checks requests against, and the file they
/// came from (re-read by [`TokenStore::reload`], on SIGHUP).
#[derive(Debug, Default)]
pub struct TokenStore {
    file: Option<PathBuf>,
    tokens: RwLock<Tokens>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this endpoint needs a bearer token (Authorization: Bearer <token>) of role {needed} or above")]
    NoToken { needed: Role },
    #[error("the bearer token is not one this node accepts")]
    UnknownToken,
    #[error("token {name:?} has role {has}; this endpoint needs {needed}")]
    Forbidden { name: String, has: Role, needed: Role },
}

impl TokenStore {
    /// Every request allowed: no tokens file.
    pub fn open_to_all() -> Self {
        Self::default()
    }

    /// The tokens of `file`, checked now: a node does not start on a file it
    /// cannot read or parse.
    pub fn load(file: &Path) -> Result<Self, TokenFileError> {
        let tokens = Tokens::load(file)?;
        Ok(Self { file: Some(file.to_path_buf()), tokens: RwLock::new(tokens) })
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Reads the file again. On an error the tokens in use stay.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let Some(file) = &self.file else { return Ok(0) };
        let tokens = Tokens::load(file)?;
        let count = tokens.len();
        *write(&self.tokens) = tokens;
        Ok(count)
    }

    /// Whether a request with `authorization` (the header's value) may do
    /// what needs `needed`; the caller, when it presented a token.
    pub fn check(&self, authorization: Option<&str>, needed: Role) -> Result<Option<Caller>, Denied> {
        if !self.enabled() {
            return Ok(None);
        }
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(Denied::NoToken { needed })?;
        let caller = read(&self.tokens).caller(token).ok_or(Denied::UnknownToken)?;
        if caller.role < needed {
            return Err(Denied::Forbidden { name: caller.name, has: caller.role, needed });
        }
        Ok(Some(caller))
    }
}

/// Re-reads `store`'s file on every SIGHUP, for as long as the process runs.
pub fn reload_on_sighup(store: std::sync::Arc<TokenStore>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGHUP: the tokens file is read at start only");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match store.reload() {
                Ok(count) => tracing::info!(count, "SIGHUP: tokens file read again"),
                Err(err) => tracing::error!(%err, "SIGHUP: tokens file refused; the tokens in use stay"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_without_a_file_allows_all_and_one_with_a_file_checks_roles_and_reloads() {
        assert_eq!(TokenStore::open_to_all().check(None, Role::Admin), Ok(None));

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tokens");
        let (reader, admin) = (new_token(), new_token());
        std::fs::write(&file, format!("read {} ui\n", hash_hex(&reader))).expect("write tokens");
        let store = TokenStore::load(&file).expect("loads");
        let bearer = |token: &str| format!("Bearer {token}");
        assert_eq!(store.check(None, Role::Read), Err(Denied::NoToken { needed: Role::Read }));
        assert_eq!(store.check(Some("Basic abc"), Role::Read), Err(Denied::NoToken { needed: Role::Read }));
        assert_eq!(store.check(Some(&bearer(&admin)), Role::Read), Err(Denied::UnknownToken));
        assert_eq!(store.check(Some(&bearer(&reader)), Role::Read).map(|c| c.map(|c| c.role)), Ok(Some(Role::Read)));
        assert_eq!(
            store.check(Some(&bearer(&reader)), Role::Write),
            Err(Denied::Forbidden { name: "ui".into(), has: Role::Read, needed: Role::Write })
        );

        std::fs::write(&file, format!("admin {} ops\n", hash_hex(&admin))).expect("rewrite tokens");
        assert_eq!(store.reload().expect("reloads"), 1);
        assert_eq!(store.check(Some(&bearer(&reader)), Role::Read), Err(Denied::UnknownToken), "a removed token");
        assert!(store.check(Some(&bearer(&admin)), Role::Write).is_ok(), "admin includes write");

        std::fs::write(&file, "admin nothex ops\n").expect("break tokens");
        assert!(store.reload().is_err());
        assert!(store.check(Some(&bearer(&admin)), Role::Admin).is_ok(), "a bad file keeps the tokens in use");
    }
}
