//! `appendkv [--no-fsync] DATADIR`: an append-only key-value store that
//! speaks powercut's line protocol (SPEC §9) on stdin/stdout. It is the
//! example a user's own program follows under `--target line:COMMAND`.
//!
//! Protocol (one request a line, one reply a line): `BEGIN`, `PUT <hex key>
//! <hex value>`, `DEL <hex key>`, `COMMIT`, `ABORT` answer `OK` or
//! `ERR <text>`; `SCAN` answers `KV <hex key> <hex value>` lines, then `END`.
//!
//! Format: `DATADIR/log` holds one record per committed transaction:
//! `len u32 | check u32 | payload`, where `check` is the CRC32C of the
//! length and the payload XOR a constant (so a run of zeros, which a size
//! extension without its data leaves, is never a valid empty record), the
//! payload a list of
//! operations (`1 klen u32 key vlen u32 value` puts, `2 klen u32 key`
//! deletes), little endian. At start it replays records up to the first
//! one that is short or fails its CRC, and truncates the log there (a torn
//! tail), syncing the truncation. A commit appends its record, `fdatasync`s
//! the log, and only then answers `OK`. A new log is created, synced, and
//! its directory synced before the first reply.
//!
//! `--no-fsync` skips every sync: a commit is answered once its record is
//! written to the OS. Under a power cut that loses acknowledged commits,
//! which powercut must catch (`lost-ack`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A record larger than this is a torn or garbage length.
const RECORD_BYTES_MAX: u32 = 16 << 20;
/// Mixed into every record's check, so zeros never check.
const CHECK_XOR: u32 = 0xA5C3_5A3C;

fn check(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload) ^ CHECK_XOR
}

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;

enum Op {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

struct Store {
    log: File,
    end: u64,
    state: Kv,
    fsync: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fsync = !args.iter().any(|a| a == "--no-fsync");
    let Some(dir) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: appendkv [--no-fsync] DATADIR");
        std::process::exit(2);
    };
    let mut store = match Store::open(Path::new(dir), fsync) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("appendkv: cannot open {dir}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = serve(&mut store) {
        eprintln!("appendkv: {e}");
        std::process::exit(1);
    }
}

impl Store {
    fn open(dir: &Path, fsync: bool) -> io::Result<Store> {
        let path = dir.join("log");
        let fresh = !path.exists();
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if fresh && fsync {
            log.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        (&log).read_to_end(&mut bytes)?;
        let (state, end) = replay(&bytes);
        if end < bytes.len() as u64 {
            log.set_len(end)?;
            if fsync {
                log.sync_data()?;
            }
        }
        Ok(Store {
            log,
            end,
            state,
            fsync,
        })
    }

    fn commit(&mut self, ops: &[Op]) -> io::Result<()> {
        let mut payload = Vec::new();
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    payload.push(1);
                    put_bytes(&mut payload, key);
                    put_bytes(&mut payload, value);
                }
                Op::Del(key) => {
                    payload.push(2);
                    put_bytes(&mut payload, key);
                }
            }
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= RECORD_BYTES_MAX)
            .ok_or_else(|| io::Error::other("transaction too large"))?;
        let mut record = Vec::with_capacity(8 + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&check(len, &payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.log.write_all_at(&record, self.end)?;
        if self.fsync {
            self.log.sync_data()?;
        }
        self.end += record.len() as u64;
        apply(&mut self.state, &payload);
        Ok(())
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The state the valid records give, and where they end.
fn replay(bytes: &[u8]) -> (Kv, u64) {
    let mut state = Kv::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX || bytes.len() - at - 8 < len as usize {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len as usize];
        if check(len, payload) != crc || parse(payload).is_none() {
            break;
        }
        apply(&mut state, payload);
        at += 8 + len as usize;
    }
    (state, at as u64)
}

/// The operations of a payload, or `None` if it is malformed.
fn parse(payload: &[u8]) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    let mut rest = payload;
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + len)?.to_vec();
        *rest = &rest[4 + len..];
        Some(bytes)
    };
    while let Some((&kind, tail)) = rest.split_first() {
        rest = tail;
        match kind {
            1 => {
                let key = take(&mut rest)?;
                let value = take(&mut rest)?;
                ops.push(Op::Put(key, value));
            }
            2 => ops.push(Op::Del(take(&mut rest)?)),
            _ => return None,
        }
    }
    Some(ops)
}

fn apply(state: &mut Kv, payload: &[u8]) {
    for op in parse(payload).expect("a checked payload") {
        match op {
            Op::Put(key, value) => {
                state.insert(key, value);
            }
            Op::Del(key) => {
                state.remove(&key);
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn serve(store: &mut Store) -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut txn: Option<Vec<Op>> = None;
    for line in stdin.lines() {
        let line = line?;
        let words: Vec<&str> = line.split(' ').collect();
        let reply = match (words.as_slice(), txn.as_mut()) {
            (["BEGIN"], None) => {
                txn = Some(Vec::new());
                "OK".to_string()
            }
            (["PUT", key, value], Some(ops)) => match (unhex(key), unhex(value)) {
                (Some(key), Some(value)) => {
                    ops.push(Op::Put(key, value));
                    "OK".to_string()
                }
                _ => "ERR bad hex".to_string(),
            },
            (["DEL", key], Some(ops)) => match unhex(key) {
                Some(key) => {
                    ops.push(Op::Del(key));
                    "OK".to_string()
                }
                None => "ERR bad hex".to_string(),
            },
            (["COMMIT"], Some(_)) => {
                let ops = txn.take().expect("in a transaction");
                match store.commit(&ops) {
                    Ok(()) => "OK".to_string(),
                    Err(e) => format!("ERR {e}"),
                }
            }
            (["ABORT"], Some(_)) => {
                txn = None;
                "OK".to_string()
            }
            (["SCAN"], None) => {
                for (key, value) in &store.state {
                    writeln!(out, "KV {} {}", hex(key), hex(value))?;
                }
                "END".to_string()
            }
            _ => format!("ERR unexpected {line:?}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
