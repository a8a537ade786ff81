//! The backup file: what `GET /backup` streams and `gameraft backup` keeps.
//!
//! ```text
//! "GAMERAFT-BACKUP\n"      16 bytes
//! header length            u32 LE
//! header                   BackupHeader as JSON
//! events                   header.dat_len bytes: the first bytes of the serving node's
//!                          events.dat, its `len | crc32 | payload` records (disk/format.rs)
//! checksum                 u32 LE: CRC-32 of the events' bytes
//! ```
//!
//! The header is written before the events are read, so the whole-file
//! checksum comes after them; each record also carries its own CRC, which
//! a restore checks again (`state_machine::install_restored`). A file cut
//! anywhere, or with a byte changed in its events, fails [`copy_events`].

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::types::{LogId, NodeId, StoredMembership};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"GAMERAFT-BACKUP\n";

/// The version of this layout; a file of another is refused.
pub const VERSION: u32 = 1;

/// A header longer than this is not a header (it holds one membership).
const MAX_HEADER_BYTES: u32 = 1 << 20;

/// What a backup holds: the events applied up to `last_log_id` on the node
/// that served it, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// [`VERSION`].
    pub version: u32,
    /// The data directory format of the records (`disk::format::FORMAT`).
    pub data_format: u32,
    /// The node that served the backup.
    pub node_id: NodeId,
    /// The last entry the events hold: the backup's point.
    pub last_log_id: LogId,
    /// The source cluster's membership at that point.
    pub membership: StoredMembership,
    /// Events in the backup (positions `0..event_count`).
    pub event_count: u64,
    /// Bytes of the event records that follow the header.
    pub dat_len: u64,
    /// The log time of the last entry with events (ms since the epoch).
    pub log_time_ms: u64,
}

impl BackupHeader {
    /// The bytes before the events: magic, length, header.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of numbers, strings and maps with string keys always
        // serializes.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// The length of the whole file (or answer) this header starts.
    pub fn total_len(&self) -> u64 {
        self.encode().len() as u64 + self.dat_len + 4
    }

    /// Reads the magic, length and header from the start of `input`.
    pub fn read_from(input: &mut impl Read) -> Result<Self, BackupError> {
        let mut magic = [0u8; MAGIC.len()];
        read_exact(input, &mut magic, "its first bytes")?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup("it does not start with GAMERAFT-BACKUP".into()));
        }
        let mut len = [0u8; 4];
        read_exact(input, &mut len, "the header length")?;
        let len = u32::from_le_bytes(len);
        if len > MAX_HEADER_BYTES {
            return Err(BackupError::NotABackup(format!("its header length {len} is not plausible")));
        }
        let mut json = vec![0u8; len as usize];
        read_exact(input, &mut json, "the header")?;
        let header: Self = serde_json::from_slice(&json)
            .map_err(|e| BackupError::NotABackup(format!("its header does not parse: {e}")))?;
        if header.version != VERSION {
            return Err(BackupError::OtherVersion { found: header.version });
        }
        Ok(header)
    }
}

/// Copies the `header.dat_len` bytes of events that follow the header in
/// `input` to `output`, then checks the checksum after them and that
/// nothing follows it.
pub fn copy_events(input: &mut impl Read, header: &BackupHeader, output: &mut impl Write) -> Result<(), BackupError> {
    let mut crc = crc32fast::Hasher::new();
    let mut left = header.dat_len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = input.read(&mut buf[..want]).map_err(BackupError::read)?;
        if n == 0 {
            return Err(BackupError::Truncated { expected: header.dat_len, found: header.dat_len - left });
        }
        crc.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(BackupError::write)?;
        left -= n as u64;
    }
    let mut stored = [0u8; 4];
    read_exact(input, &mut stored, "the checksum after the events")?;
    let (stored, computed) = (u32::from_le_bytes(stored), crc.finalize());
    if stored != computed {
        return Err(BackupError::Checksum { stored, computed });
    }
    match input.read(&mut [0u8; 1]).map_err(BackupError::read)? {
        0 => Ok(()),
        _ => Err(BackupError::NotABackup("bytes follow its checksum".into())),
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BackupError::NotABackup(format!("it ends before {what}: cut short")),
        _ => BackupError::read(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Membership;

    fn header(dat_len: u64) -> BackupHeader {
        BackupHeader {
            version: VERSION,
            data_format: crate::disk::format::FORMAT,
            node_id: 1,
            last_log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 9),
            membership: StoredMembership::new(None, Membership::new(vec![[1].into()], ())),
            event_count: 2,
            dat_len,
            log_time_ms: 5,
        }
    }

    fn file(events: &[u8]) -> Vec<u8> {
        let mut out = header(events.len() as u64).encode();
        out.extend_from_slice(events);
        out.extend_from_slice(&crc32fast::hash(events).to_le_bytes());
        out
    }

    fn check(bytes: &[u8]) -> Result<Vec<u8>, BackupError> {
        let mut input = bytes;
        let header = BackupHeader::read_from(&mut input)?;
        let mut events = Vec::new();
        copy_events(&mut input, &header, &mut events)?;
        Ok(events)
    }

    #[test]
    fn a_file_reads_back_and_its_length_is_known_from_the_header() {
        let bytes = file(b"some events");
        assert_eq!(header(11).total_len(), bytes.len() as u64);
        assert_eq!(check(&bytes).unwrap(), b"some events");
    }

    #[test]
    fn every_cut_and_every_changed_event_byte_is_refused() {
        let bytes = file(b"0123456789abcdef");
        for cut in 0..bytes.len() {
            assert!(check(&bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
        }
        let events_at = bytes.len() - 4 - 16;
        for at in events_at..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x20;
            assert!(matches!(check(&changed), Err(BackupError::Checksum { .. })), "byte {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(check(&longer).is_err());
        let mut other = file(b"x");
        other[0] = b'g';
        assert!(matches!(check(&other), Err(BackupError::NotABackup(_))));
    }
}
