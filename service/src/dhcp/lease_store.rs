//! The durable lease journal of one network.
//!
//! Every grant and removal is appended as a framed record (length, CRC-32,
//! JSON) and made durable with one `fdatasync` per batch: the server groups
//! all the records that arrive while the previous sync runs (group commit),
//! so the disk is not the bottleneck and an ACK is sent only once its lease
//! is on disk. Replaying the journal gives the live leases back, in time
//! linear in its length; a torn last record (a crash mid-write) fails its
//! length or CRC check and is cut off. A corrupt record elsewhere is
//! skipped: the replay finds the next valid frame and keeps everything
//! after it, and the journal is then rewritten clean. When the journal
//! holds far more records than live leases it is rewritten (compacted)
//! atomically: a new file, synced, renamed over the old one. The journal
//! names every guest's MAC, address and host name: it is readable by root
//! only (0600), and so is each rewrite.

use super::lease::Lease;
use crate::files::write_atomic_private;
use guestnet_mode_api::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The journal's file mode: root's alone.
const MODE: u32 = 0o600;

/// Length and CRC, both little-endian u32.
const HEADER: usize = 8;
/// No honest record comes near this; a larger length means corruption.
const MAX_RECORD: usize = 4096;
/// Compact once the journal holds this many records and four times more
/// than there are live leases.
const COMPACT_MIN_RECORDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    Grant(Lease),
    Remove { mac: MacAddr },
}

/// What opening a journal found.
#[derive(Debug, Default)]
pub struct Replay {
    pub leases: HashMap<MacAddr, Lease>,
    /// Bytes of a torn tail or of corrupt records that were dropped.
    pub dropped_bytes: u64,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    records: usize,
}

fn frame(record: &Record, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(record).expect("records always serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What parsing a journal's bytes found.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    /// Where the last valid record ends: what follows is a torn tail.
    pub end: usize,
    /// Bytes before `end` that were skipped as corrupt.
    pub skipped: usize,
}

/// Every payload is a JSON object, so starts so: after corruption, only
/// the offsets followed by these bytes are tried as the next frame. Host
/// names (one DNS label) and client ids (numbers) never contain them, so
/// in practice only real records are tried and the search stays linear.
const PAYLOAD_START: &[u8] = b"{\"";

/// The record framed at `at`, and its length with the header.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if !payload.starts_with(PAYLOAD_START) || crc32fast::hash(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice::<Record>(payload).ok()?;
    Some((record, HEADER + len))
}

/// Parses framed records from `bytes`. A frame that fails its checks is
/// skipped: the parse goes on at the next offset where a valid frame
/// starts, so one corrupt record loses only itself.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut at = 0;
    let mut skipping_from = None;
    while bytes.len() - at >= HEADER {
        match frame_at(bytes, at) {
            Some((record, len)) => {
                if let Some(from) = skipping_from.take() {
                    out.skipped += at - from;
                }
                out.records.push(record);
                at += len;
                out.end = at;
            }
            None => {
                skipping_from.get_or_insert(at);
                // The next place a payload could start, less its header.
                at = match memchr_from(bytes, at + HEADER + 1) {
                    Some(p) => p - HEADER,
                    None => bytes.len(),
                };
            }
        }
    }
    out
}

/// The offset of the next `{"` at or after `from`.
fn memchr_from(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.windows(PAYLOAD_START.len())
        .position(|w| w == PAYLOAD_START)
        .map(|p| from + p)
}

/// Parses framed records from `bytes`; returns them and where the last
/// valid one ends.
pub fn parse_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let parsed = parse(bytes);
    (parsed.records, parsed.end)
}

/// The live leases, replayed in order; each record costs O(1).
#[derive(Default)]
struct Replayer {
    leases: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
}

impl Replayer {
    fn apply(&mut self, record: Record) {
        match record {
            Record::Grant(lease) => {
                // One address, one holder: a grant takes it from anyone else.
                if let Some(other) = self.by_ip.insert(lease.ip, lease.mac) {
                    if other != lease.mac {
                        self.leases.remove(&other);
                    }
                }
                if let Some(old) = self.leases.insert(lease.mac, lease.clone()) {
                    if old.ip != lease.ip && self.by_ip.get(&old.ip) == Some(&lease.mac) {
                        self.by_ip.remove(&old.ip);
                    }
                }
            }
            Record::Remove { mac } => {
                if let Some(old) = self.leases.remove(&mac) {
                    if self.by_ip.get(&old.ip) == Some(&mac) {
                        self.by_ip.remove(&old.ip);
                    }
                }
            }
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and replays it.
    pub fn open(path: &Path) -> io::Result<(Journal, Replay)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(MODE)
            .open(path)?;
        // A journal written before it was private, or by hand.
        if file.metadata()?.permissions().mode() & 0o777 != MODE {
            file.set_permissions(std::fs::Permissions::from_mode(MODE))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let parsed = parse(&bytes);
        let mut replay = Replay {
            dropped_bytes: (bytes.len() - parsed.end + parsed.skipped) as u64,
            ..Replay::default()
        };
        if parsed.end < bytes.len() {
            file.set_len(parsed.end as u64)?;
            file.sync_all()?;
        }
        drop(bytes);
        let count = parsed.records.len();
        let mut replayer = Replayer::default();
        for r in parsed.records {
            replayer.apply(r);
        }
        replay.leases = replayer.leases;
        let mut journal = Journal {
            path: path.to_owned(),
            file,
            records: count,
        };
        if parsed.skipped > 0 {
            // Written clean, so the corruption is not read again.
            journal.compact(replay.leases.values())?;
        }
        Ok((journal, replay))
    }

    /// Appends `records` and makes them durable before returning.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 160);
        for r in records {
            frame(r, &mut buf);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.records += records.len();
        Ok(())
    }

    pub fn should_compact(&self, live: usize) -> bool {
        self.records >= COMPACT_MIN_RECORDS && self.records > 4 * live.max(1)
    }

    /// Rewrites the journal as one grant per live lease, atomically.
    pub fn compact<'a>(&mut self, live: impl Iterator<Item = &'a Lease>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut count = 0;
        for lease in live {
            frame(&Record::Grant(lease.clone()), &mut buf);
            count += 1;
        }
        write_atomic_private(&self.path, &buf).map_err(|e| e.source)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn lease(n: u8, ip: u8) -> Lease {
        Lease {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, n]),
            ip: Ipv4Addr::new(10, 0, 0, ip),
            hostname: Some(format!("h{n}")),
            client_id: None,
            expires: 1_000 + u64::from(n),
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gn-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("net.journal")
    }

    #[test]
    fn replays_grants_and_removals() {
        let path = temp("replay");
        let (mut j, replay) = Journal::open(&path).unwrap();
        assert!(replay.leases.is_empty());
        j.append(&[Record::Grant(lease(1, 10)), Record::Grant(lease(2, 11))])
            .unwrap();
        j.append(&[Record::Remove {
            mac: lease(1, 10).mac,
        }])
        .unwrap();
        drop(j);
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 1);
        assert_eq!(replay.leases[&lease(2, 11).mac], lease(2, 11));
        assert_eq!(replay.dropped_bytes, 0);
    }

    #[test]
    fn a_torn_tail_is_cut_off_not_fatal() {
        let path = temp("torn");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&[Record::Grant(lease(1, 10)), Record::Grant(lease(2, 11))])
            .unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        // Cut the last record in half, as a crash mid-write would.
        std::fs::write(&path, &full[..full.len() - 20]).unwrap();
        let (mut j, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 1);
        assert!(replay.dropped_bytes > 0);
        // Appending after the cut yields a clean journal again.
        j.append(&[Record::Grant(lease(3, 12))]).unwrap();
        drop(j);
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 2);
        assert_eq!(replay.dropped_bytes, 0);
    }

    #[test]
    fn a_corrupt_record_in_the_middle_loses_only_itself() {
        let path = temp("middle");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&[
            Record::Grant(lease(1, 10)),
            Record::Grant(lease(2, 11)),
            Record::Grant(lease(3, 12)),
        ])
        .unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let first = parse(&bytes).records.len();
        assert_eq!(first, 3);
        // Flip a byte of the second record's payload, then of its length.
        let second = {
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            HEADER + len
        };
        bytes[second + HEADER + 12] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 2, "{:?}", replay.leases.keys());
        assert!(replay.leases.contains_key(&lease(3, 12).mac));
        assert!(replay.dropped_bytes > 0);
        // Rewritten clean: the next replay finds nothing to drop.
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 2);
        assert_eq!(replay.dropped_bytes, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1] ^= 0x40; // the first record's length
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 1);
    }

    #[test]
    fn the_journal_and_its_rewrites_are_private() {
        let path = temp("mode");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (mut j, _) = Journal::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        j.compact([lease(1, 10)].iter()).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(j);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Journal::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_large_journal_replays_in_linear_time() {
        let mut bytes = Vec::new();
        let n = 40_000u32;
        for i in 0..n {
            let l = Lease {
                mac: MacAddr([0x52, 0x54, 0, 1, (i >> 8) as u8, i as u8]),
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                hostname: None,
                client_id: None,
                expires: 1,
            };
            frame(&Record::Grant(l), &mut bytes);
        }
        let t = std::time::Instant::now();
        let mut r = Replayer::default();
        for rec in parse(&bytes).records {
            r.apply(rec);
        }
        assert_eq!(r.leases.len(), n as usize);
        // The quadratic replay took minutes for this in a debug build.
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn a_corrupt_last_record_is_dropped() {
        let path = temp("crc");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&[Record::Grant(lease(1, 10)), Record::Grant(lease(2, 11))])
            .unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 1);
    }

    #[test]
    fn compaction_keeps_exactly_the_live_leases() {
        let path = temp("compact");
        let (mut j, _) = Journal::open(&path).unwrap();
        for round in 0..50u8 {
            j.append(&[Record::Grant(lease(round % 5, 10 + round % 5))])
                .unwrap();
        }
        let (_, replay) = Journal::open(&path).unwrap();
        let live: Vec<Lease> = replay.leases.values().cloned().collect();
        j.compact(live.iter()).unwrap();
        j.append(&[Record::Remove {
            mac: lease(0, 10).mac,
        }])
        .unwrap();
        drop(j);
        let (j, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.leases.len(), 4);
        assert_eq!(j.records, 6);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse_records(&bytes);
        }
        let mut huge = vec![0xff; 16];
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_records(&huge).1, 0);
    }
}
