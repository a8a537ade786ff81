//! The tokens file, its roles, and checking a presented token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `GET` of events, the log, status, membership and ephemeral state.
    Read,
    /// `POST /events`, and everything `Read` may.
    Write,
    /// Membership changes (`POST`/`DELETE /nodes`), and everything `Write` may.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: expected read, write or admin")),
        }
    }
}

/// Who made a request: the name and role of the token it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why a tokens file was refused; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason} (a line is `<role> <sha256 hex> <name>`)")]
    Line { path: PathBuf, line: usize, reason: String },
}

#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    caller: Caller,
}

/// The tokens a node accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|(line, reason)| TokenFileError::Line { path: path.to_path_buf(), line, reason })
    }

    /// Parses a tokens file's text; an error names the 1-based line.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(role), Some(hash), Some(name), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err((n + 1, "expected three fields".into()));
            };
            let role = role.parse().map_err(|e| (n + 1, e))?;
            let hash = parse_hash(hash).ok_or_else(|| (n + 1, "the hash is not 64 hex digits".to_string()))?;
            if entries.iter().any(|e: &Entry| e.caller.name == name) {
                return Err((n + 1, format!("the name {name:?} is used twice")));
            }
            entries.push(Entry { hash, caller: Caller { name: name.to_string(), role } });
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller `token` belongs to, if any. Every entry is compared, in
    /// constant time, so the answer's timing says nothing about which
    /// entry matched or how much of a hash did.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&hash)) {
                found = Some(entry.caller.clone());
            }
        }
        found
    }
}

/// The SHA-256 of `token` in hex, as the tokens file stores it.
pub fn hash_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token: 256 bits, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// `bytes` in lower-case hex, the form of tokens and of their hashes (read
/// back by `parse_hash`).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_the_role_of_its_line_and_an_unknown_one_none() {
        let (reader, writer) = (new_token(), new_token());
        assert_ne!(reader, writer);
        let text = format!(
            "# who may do what\nread {} dashboard\n\nwrite {} game-server-1  # a comment\n",
            hash_hex(&reader),
            hash_hex(&writer)
        );
        let tokens = Tokens::parse(&text).expect("parses");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.caller(&reader), Some(Caller { name: "dashboard".into(), role: Role::Read }));
        assert_eq!(tokens.caller(&writer).map(|c| c.role), Some(Role::Write));
        assert_eq!(tokens.caller(&hash_hex(&reader)), None, "the stored hash is not a token");
        assert_eq!(tokens.caller(""), None);
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let hash = hash_hex("x");
        for (text, line) in [
            (format!("read {hash}"), 1),
            (format!("\nroot {hash} a"), 2),
            ("write abc a".to_string(), 1),
            (format!("read {hash} a extra"), 1),
            (format!("read {hash} a\nadmin {hash} a"), 2),
        ] {
            let err = Tokens::parse(&text).expect_err(&text);
            assert_eq!(err.0, line, "{text}: {}", err.1);
        }
    }
}
