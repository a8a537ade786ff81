//! Checksummed records: the on-disk unit of the Raft log segments and of the
//! state machine's event file.
//!
//! ```text
//! | payload length: u32 LE | crc32(payload): u32 LE | payload ... |
//! ```
//!
//! A crash can leave the last record cut short, or (on file systems that
//! extend the size before the data lands) followed by zeros. [`scan`] reads
//! records until the first one that is incomplete, empty, too long or fails
//! its checksum, and reports where the clean prefix ends; callers decide
//! whether a tail there is a torn write (drop it) or corruption (refuse).
//! [`find_valid_record`] looks for a whole record after a bad one: where
//! one exists, the damage is not the end of an interrupted write.

use std::io::{self, Read};

/// Bytes before each payload.
pub const HEADER_LEN: u64 = 8;

/// Longest payload accepted, written or read. Far above any entry the API
/// lets in (`config.rs` checks the body and batch limits against it at
/// start), so a longer length field on read means a damaged header.
pub const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

/// A payload [`encode`] refused: written, it could never be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record of {len} bytes exceeds the {MAX_PAYLOAD_LEN}-byte record limit")]
pub struct RecordTooLarge {
    pub len: usize,
}

/// Appends one record holding `payload` to `out`; refuses a payload longer
/// than [`MAX_PAYLOAD_LEN`] (then `out` is unchanged).
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), RecordTooLarge> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN)
        .ok_or(RecordTooLarge { len: payload.len() })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Why a scan stopped before the end of the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    #[error("record header cut short")]
    ShortHeader,
    #[error("record payload cut short (length {0})")]
    ShortPayload(u32),
    #[error("zero-length record (unwritten space)")]
    Empty,
    #[error("record length {0} exceeds the limit")]
    TooLong(u32),
    #[error("record checksum mismatch")]
    Checksum,
}

/// Where a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    /// Length of the clean prefix: the offset just past the last good record.
    pub clean_len: u64,
    /// Why the bytes after `clean_len` were not read, if there were any.
    pub bad: Option<BadRecord>,
}

/// Reads records from `reader` (positioned at `start`), calling `on_record`
/// with each record's offset and payload, until the end or the first bad
/// record. An error from `on_record` stops the scan and is returned.
pub fn scan<E: From<io::Error>>(
    mut reader: impl Read,
    start: u64,
    mut on_record: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<ScanEnd, E> {
    let mut offset = start;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN as usize];
        match read_full(&mut reader, &mut header)? {
            0 => return Ok(ScanEnd { clean_len: offset, bad: None }),
            n if n < header.len() => return Ok(ScanEnd { clean_len: offset, bad: Some(BadRecord::ShortHeader) }),
            _ => {}
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let bad = if len == 0 {
            Some(BadRecord::Empty)
        } else if len > MAX_PAYLOAD_LEN {
            Some(BadRecord::TooLong(len))
        } else {
            payload.resize(len as usize, 0);
            if read_full(&mut reader, &mut payload)? < payload.len() {
                Some(BadRecord::ShortPayload(len))
            } else if crc32fast::hash(&payload) != crc {
                Some(BadRecord::Checksum)
            } else {
                None
            }
        };
        if let Some(bad) = bad {
            return Ok(ScanEnd { clean_len: offset, bad: Some(bad) });
        }
        on_record(offset, &payload)?;
        offset += HEADER_LEN + u64::from(len);
    }
}

/// Reads one whole record at `offset` of `file`, checking its checksum.
pub fn read_at(file: &super::ByteFile, offset: u64) -> io::Result<Vec<u8>> {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, offset)?;
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad record length {len} at offset {offset}")));
    }
    let mut payload = vec![0; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN)?;
    if crc32fast::hash(&payload) != u32::from_le_bytes([c0, c1, c2, c3]) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("record checksum mismatch at offset {offset}")));
    }
    Ok(payload)
}

/// The offset in `bytes` of the first whole record, at any byte offset from
/// `from` on, whose checksum matches and whose payload `accept`s; `None` if
/// there is none. Every offset is tried, because a damaged length field
/// hides where the next record starts.
pub fn find_valid_record(bytes: &[u8], from: usize, mut accept: impl FnMut(&[u8]) -> bool) -> Option<usize> {
    let header_len = HEADER_LEN as usize;
    (from..bytes.len()).find(|&offset| {
        let Some(header) = bytes.get(offset..offset + header_len) else { return false };
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header else { return false };
        let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]);
        if len == 0 || len > MAX_PAYLOAD_LEN {
            return false;
        }
        let start = offset + header_len;
        let Some(payload) = bytes.get(start..start + len as usize) else { return false };
        crc32fast::hash(payload) == u32::from_le_bytes([*c0, *c1, *c2, *c3]) && accept(payload)
    })
}

/// Like `read_exact`, but returns how much was read when the end comes first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record number {i} {}", "x".repeat(i % 7)).into_bytes()).collect()
    }

    fn scan_all(bytes: &[u8]) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut seen = Vec::new();
        let end = scan::<io::Error>(bytes, 0, |_, p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        (seen, end)
    }

    /// Cutting the bytes anywhere yields exactly the records that fit whole,
    /// and the clean length is where the next record would start.
    #[test]
    fn every_cut_keeps_exactly_the_whole_records() {
        let records = payloads(20);
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for p in &records {
            encode(&mut bytes, p).expect("a small record");
            ends.push(bytes.len() as u64);
        }
        for cut in 0..=bytes.len() {
            let (seen, end) = scan_all(&bytes[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(seen, records[..whole], "cut at {cut}");
            assert_eq!(end.clean_len, if whole == 0 { 0 } else { ends[whole - 1] });
            assert_eq!(end.bad.is_some(), end.clean_len != cut as u64, "cut at {cut}");
        }
    }

    #[test]
    fn flipped_bits_and_zero_fill_stop_the_scan() {
        let mut bytes = Vec::new();
        encode(&mut bytes, b"first").expect("a small record");
        let second = bytes.len();
        encode(&mut bytes, b"second").expect("a small record");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert_eq!(scan_all(&flipped).1, ScanEnd { clean_len: second as u64, bad: Some(BadRecord::Checksum) });

        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0; 64]);
        assert_eq!(scan_all(&zeroed).1, ScanEnd { clean_len: bytes.len() as u64, bad: Some(BadRecord::Empty) });
    }

    #[test]
    fn a_valid_record_is_found_after_damage_but_not_in_torn_or_zeroed_tails() {
        let mut bytes = Vec::new();
        encode(&mut bytes, b"first").expect("encode");
        let second = bytes.len();
        encode(&mut bytes, b"second").expect("encode");
        let third = bytes.len();
        encode(&mut bytes, b"third").expect("encode");
        let accept_all = |_: &[u8]| true;

        // A flipped payload byte, or a damaged length field: the third record
        // is still found, wherever the scan starts inside the damage.
        let mut flipped = bytes.clone();
        flipped[second + HEADER_LEN as usize] ^= 0x01;
        assert_eq!(find_valid_record(&flipped, second + 1, accept_all), Some(third));
        let mut bad_len = bytes.clone();
        bad_len[second..second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(find_valid_record(&bad_len, second + 1, accept_all), Some(third));
        assert_eq!(find_valid_record(&bad_len, second + 1, |p| p != b"third"), None, "`accept` has the last word");

        // What a crash leaves after the last whole record: nothing valid.
        for cut in third..bytes.len() {
            assert_eq!(find_valid_record(&bytes[..cut], third + 1, accept_all), None, "cut at {cut}");
        }
        let mut zeroed = bytes[..third].to_vec();
        zeroed.extend_from_slice(&[0; 64]);
        assert_eq!(find_valid_record(&zeroed, third, accept_all), None);
    }

    #[test]
    fn a_payload_over_the_limit_is_refused_and_one_at_the_limit_reads_back() {
        let limit = MAX_PAYLOAD_LEN as usize;
        let mut out = b"before".to_vec();
        assert_eq!(encode(&mut out, &vec![7; limit + 1]), Err(RecordTooLarge { len: limit + 1 }));
        assert_eq!(out, b"before", "nothing written");

        let mut bytes = Vec::new();
        encode(&mut bytes, &vec![7; limit]).expect("a record at the limit");
        let (seen, end) = scan_all(&bytes);
        assert_eq!((seen.len(), seen[0].len(), end.bad), (1, limit, None), "what is written reads back");
    }
}
