//! `gameraft backup --from URL FILE`: one node's `GET /backup` into a file.
//!
//! The answer is written to `FILE.tmp`, fsynced, read back and checked
//! (header, length, checksum), and only then renamed to `FILE` (and the
//! directory synced): `FILE` is a whole, checked backup or is not touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::format::{copy_events, BackupHeader};
use super::BackupError;
use crate::disk::sync_dir;

/// Where to take a backup from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The node's URL, e.g. `http://10.0.0.5:8080`.
    pub url: String,
    /// An admin token, for a node that checks tokens.
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for an `https://` URL, such as the
    /// cluster CA (`gameraft certs init`).
    pub ca_file: Option<PathBuf>,
}

/// A backup written.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub header: BackupHeader,
    /// The file's size.
    pub bytes: u64,
    pub took: Duration,
}

/// Takes a backup from `source` into `file`.
pub async fn download(source: &Source, file: &Path) -> Result<Downloaded, BackupError> {
    let started = Instant::now();
    let base = source.url.trim_end_matches('/');
    let url = format!("{base}/backup");
    let client = http_client(source)?;
    let mut request = client.get(&url);
    if let Some(token) = &source.token {
        request = request.bearer_auth(token);
    }
    let http_error = |e: reqwest::Error| BackupError::Http { url: url.clone(), reason: error_chain(&e) };
    let mut response = request.send().await.map_err(http_error)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(BackupError::Refused { url, status: status.as_u16(), message: message.trim().to_string() });
    }

    let tmp = tmp_path(file);
    let written = async {
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| BackupError::file("create", &tmp, e))?;
        let cut = |e: reqwest::Error| BackupError::Http {
            url: url.clone(),
            reason: format!("the answer was cut short: {}", error_chain(&e)),
        };
        while let Some(chunk) = response.chunk().await.map_err(cut)? {
            out.write_all(&chunk).await.map_err(|e| BackupError::file("write", &tmp, e))?;
        }
        out.sync_all().await.map_err(|e| BackupError::file("fsync", &tmp, e))?;
        let check = tmp.clone();
        tokio::task::spawn_blocking(move || check_file(&check))
            .await
            .map_err(|e| BackupError::Read(std::io::Error::other(e)))?
    }
    .await;
    let (header, bytes) = match written {
        Ok(checked) => checked,
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err);
        }
    };
    std::fs::rename(&tmp, file).map_err(|e| BackupError::file("rename the backup to", file, e))?;
    let dir = super::directory_of(file);
    sync_dir(&dir).map_err(|e| BackupError::file("fsync", &dir, e))?;
    Ok(Downloaded { header, bytes, took: started.elapsed() })
}

/// Reads the backup at `path` through: header, events, checksum.
pub fn check_file(path: &Path) -> Result<(BackupHeader, u64), BackupError> {
    let file = std::fs::File::open(path).map_err(|e| BackupError::file("open", path, e))?;
    let bytes = file.metadata().map_err(|e| BackupError::file("read", path, e))?.len();
    let mut input = std::io::BufReader::new(file);
    let header = BackupHeader::read_from(&mut input)?;
    copy_events(&mut input, &header, &mut std::io::sink())?;
    Ok((header, bytes))
}

fn http_client(source: &Source) -> Result<reqwest::Client, BackupError> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(path) = &source.ca_file {
        let ca_error = |reason: String| BackupError::Ca { path: path.clone(), reason };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let certificate = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(error_chain(&e)))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| BackupError::Http { url: source.url.clone(), reason: error_chain(&e) })
}

/// `FILE.tmp`, beside `FILE`.
fn tmp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// An error and its causes on one line (reqwest's own message is often
/// just "error sending request").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
