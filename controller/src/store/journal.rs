//! The journal file's framing: each record is its length (4 bytes, little
//! endian), the CRC-32 of its payload (4 bytes, little endian) and the payload
//! (compact JSON). This module frames a payload and splits a journal's bytes into
//! payloads, telling a torn or damaged last record (a crash in the middle of an
//! append: ignored) from damage before it (an error naming the byte offset). It
//! does no I/O.

/// Bytes before each payload: its length and its checksum.
pub(super) const HEADER: usize = 8;

/// `payload` framed as one record.
pub(super) fn frame(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("a journal record over 4 GiB"))?;
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    Ok(record)
}

/// A journal's whole records.
#[derive(Debug, Default)]
pub(super) struct Records<'a> {
    /// Each record's byte offset in the file and payload.
    pub(super) payloads: Vec<(usize, &'a [u8])>,
    /// Where the whole records end: a torn last record starts here.
    pub(super) whole_len: usize,
    /// Why the bytes after `whole_len` were left out, if there are any.
    pub(super) torn: Option<String>,
}

/// Damage before the journal's last record, at this byte offset.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Damaged {
    pub(super) offset: usize,
    pub(super) what: &'static str,
}

/// Splits `bytes` into records. The last record may be torn (shorter than its
/// length says, its checksum wrong, or zeros where its header should be: what a
/// crash during its append leaves); anything else wrong is [`Damaged`].
pub(super) fn split(bytes: &[u8]) -> Result<Records<'_>, Damaged> {
    let mut records = Records::default();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let torn = |why: &str| Some(format!("{why} at byte {offset} ({} bytes)", rest.len()));
        if rest.len() < HEADER {
            records.torn = torn("a record's header cut short");
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 {
            if rest.iter().all(|&b| b == 0) {
                records.torn = torn("zeros where a record should start");
                break;
            }
            if !whole_records_after(rest) {
                records.torn = torn("a record of length 0, and no whole record after it");
                break;
            }
            return Err(Damaged {
                offset,
                what: "a record of length 0",
            });
        }
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            records.torn = torn("a record cut short");
            break;
        };
        if crc32fast::hash(payload) != crc {
            // A torn append may have garbled its own length field: only whole
            // records after it (wherever they start) prove the damage is not
            // the last append's.
            if !whole_records_after(rest) {
                records.torn = torn("the last record's checksum does not match");
                break;
            }
            return Err(Damaged {
                offset,
                what: "a record's checksum does not match, and records follow it",
            });
        }
        records.payloads.push((offset, payload));
        offset += HEADER + len;
        records.whole_len = offset;
    }
    Ok(records)
}

/// True when whole records run to the end of `record` (a bad record and what
/// follows it) from some offset after its header: the bad record is then not
/// the last append. Only called on damage, so the scan's cost does not matter.
fn whole_records_after(record: &[u8]) -> bool {
    (HEADER..record.len()).any(|start| whole_records_follow(&record[start..]))
}

/// True when `bytes` is one or more whole records with good checksums, to its
/// very end.
fn whole_records_follow(bytes: &[u8]) -> bool {
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER {
            return false;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        match rest.get(HEADER..HEADER + len) {
            Some(payload) if len > 0 && crc32fast::hash(payload) == crc => {
                offset += HEADER + len;
            }
            _ => return false,
        }
    }
    offset > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| frame(p).unwrap()).collect()
    }

    #[test]
    fn whole_records_come_back_and_a_torn_tail_is_left_out() {
        let bytes = journal(&[b"{\"a\":1}", b"{\"b\":2}"]);
        let all = split(&bytes).unwrap();
        assert_eq!(all.payloads.len(), 2);
        assert_eq!(all.whole_len, bytes.len());
        assert!(all.torn.is_none());
        for cut in 1..bytes.len() - 15 {
            let records = split(&bytes[..15 + cut]).unwrap();
            let whole = if 15 + cut == bytes.len() { 2 } else { 1 };
            assert_eq!(records.payloads.len(), whole, "cut at {}", 15 + cut);
        }
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 20]);
        let records = split(&zeros).unwrap();
        assert_eq!(records.payloads.len(), 2);
        assert!(records.torn.unwrap().contains("zeros"));
    }

    #[test]
    fn a_damaged_last_record_is_torn_and_one_before_it_is_an_error() {
        let bytes = journal(&[b"{\"a\":1}", b"{\"b\":2}"]);
        let mut last = bytes.clone();
        *last.last_mut().unwrap() ^= 1;
        let records = split(&last).unwrap();
        assert_eq!(records.payloads.len(), 1);
        assert!(records.torn.unwrap().contains("checksum"));
        let mut first = bytes;
        first[HEADER + 2] ^= 1;
        assert_eq!(split(&first).unwrap_err().offset, 0);
    }

    #[test]
    fn a_last_record_whose_length_is_garbled_is_torn() {
        let bytes = journal(&[b"{\"a\":1}", b"{\"b\":22222222}"]);
        let second = frame(b"{\"a\":1}").unwrap().len();
        for garbled in [1u32, 3, 5, 0] {
            let mut torn = bytes.clone();
            torn[second..second + 4].copy_from_slice(&garbled.to_le_bytes());
            let records = split(&torn).unwrap();
            assert_eq!(records.payloads.len(), 1, "length {garbled}");
            assert_eq!(records.whole_len, second, "length {garbled}");
            assert!(records.torn.is_some(), "length {garbled}");
        }
        // The first record's length garbled with a whole record after it: damage.
        let mut damaged = bytes;
        damaged[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(split(&damaged).is_err());
    }
}
