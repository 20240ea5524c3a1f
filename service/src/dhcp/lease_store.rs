//! The durable lease journal of one network.
//!
//! Every grant and removal is appended as a framed record (length, CRC-32,
//! JSON) and made durable with one `fdatasync` per batch: the server groups
//! all the records that arrive while the previous sync runs (group commit),
//! so the disk is not the bottleneck and an ACK is sent only once its lease
//! is on disk. Replaying the journal gives the live leases back; a torn last
//! record (a crash mid-write) fails its length or CRC check and is cut off.
//! When the journal holds far more records than live leases it is rewritten
//! (compacted) atomically: a new file, synced, renamed over the old one.

use super::lease::Lease;
use crate::files::write_atomic;
use guestnet_mode_api::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
    /// Bytes of a torn or corrupt tail that were cut off.
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

/// Parses framed records from `bytes`; returns them and the length of the
/// valid prefix.
pub fn parse_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_RECORD || bytes.len() - at - HEADER < len {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    (records, at)
}

fn apply(leases: &mut HashMap<MacAddr, Lease>, record: Record) {
    match record {
        Record::Grant(lease) => {
            // One address, one holder: a grant takes it from anyone else.
            leases.retain(|_, l| l.ip != lease.ip || l.mac == lease.mac);
            leases.insert(lease.mac, lease);
        }
        Record::Remove { mac } => {
            leases.remove(&mac);
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
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid) = parse_records(&bytes);
        let mut replay = Replay::default();
        if valid < bytes.len() {
            replay.dropped_bytes = (bytes.len() - valid) as u64;
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let count = records.len();
        for r in records {
            apply(&mut replay.leases, r);
        }
        Ok((
            Journal {
                path: path.to_owned(),
                file,
                records: count,
            },
            replay,
        ))
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
        write_atomic(&self.path, &buf).map_err(|e| e.source)?;
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
    fn a_corrupt_record_stops_the_replay_there() {
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
