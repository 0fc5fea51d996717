//! [`EngineTarget`]: the reference engine behind the [`Target`] seam.

use super::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetFactory, TargetKind,
    TargetMode, TargetResult, TxnHandle,
};
use crate::fault::FaultProfile;
use ::engine::storage::{Storage, StorageFile, StorageLock, read_exact_at};
use ::engine::wal::record::{self, Body};
use ::engine::{
    Clock, CommitTicket, Config, Engine, Error, FlushTarget, FsyncPolicy, RecoveryReport, TxnId,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The reference engine in the registry: its modes are its fsync policies.
pub struct EngineKind;

pub static ENGINE_KIND: EngineKind = EngineKind;

impl TargetKind for EngineKind {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn description(&self) -> &'static str {
        "the reference WAL engine, in-process; its modes are its fsync policies"
    }

    fn modes(&self) -> Vec<TargetMode> {
        [
            FsyncPolicy::Always,
            FsyncPolicy::Group { delay_us: 0 },
            FsyncPolicy::Interval { ms: 10 },
            FsyncPolicy::None,
        ]
        .into_iter()
        .map(TargetMode::Engine)
        .collect()
    }

    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String> {
        mode.parse::<FsyncPolicy>().map(TargetMode::Engine)
    }

    fn deterministic(&self) -> bool {
        true
    }

    fn parts_installed(&self) -> Result<(), String> {
        Ok(())
    }

    fn promises_source(&self) -> &'static str {
        "SPEC §4.3"
    }
}

/// The promise of `policy` under `fault` (SPEC §4.3): nothing is lost to a
/// process crash; under every power-cut profile `always` and `group` keep
/// every acknowledged commit, `interval:MS` may lose the last MS ms, and
/// `none` may lose what came after the last durable point (a prefix).
pub fn promise(policy: FsyncPolicy, fault: FaultProfile) -> PromiseKind {
    if !fault.loses_volatile_data() {
        return PromiseKind::Durable;
    }
    match policy {
        FsyncPolicy::Always | FsyncPolicy::Group { .. } => PromiseKind::Durable,
        FsyncPolicy::Interval { ms } => PromiseKind::Window { ms },
        FsyncPolicy::None => PromiseKind::Prefix,
    }
}

/// Opens the reference engine with a fixed configuration.
#[derive(Clone, Debug)]
pub struct EngineFactory {
    pub config: Config,
}

impl TargetFactory for EngineFactory {
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        let storage = Arc::new(KeepRemovedWal {
            inner: storage,
            keeping: AtomicBool::new(true),
            removed: Mutex::new(Vec::new()),
        });
        let opened = Engine::open(storage.clone(), self.config.clone(), clock);
        storage.keeping.store(false, Ordering::SeqCst);
        Ok(Box::new(EngineTarget {
            engine: opened.map_err(target_error)?,
            storage,
            pending: Vec::new(),
            flush_target: None,
        }))
    }

    fn engine_config(&self) -> Option<Config> {
        Some(self.config.clone())
    }
}

/// The reference engine, driven deterministically through its commit-ticket
/// API.
pub struct EngineTarget {
    engine: Engine,
    /// The engine's storage, with the WAL segments recovery removed.
    storage: Arc<KeepRemovedWal>,
    /// Issued commits not yet acknowledged, in issue order.
    pending: Vec<CommitTicket>,
    /// The group flush begun and not yet finished.
    flush_target: Option<FlushTarget>,
}

impl EngineTarget {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn target_error(error: Error) -> TargetError {
    let kind = match &error {
        Error::Conflict { .. } | Error::PageFull { .. } | Error::TooLarge { .. } => {
            TargetErrorKind::Rejected
        }
        Error::Corruption { .. } => TargetErrorKind::Corruption,
        Error::Io { .. } | Error::SyncFailed { .. } | Error::Stopped(_) => TargetErrorKind::Fatal,
        Error::Locked | Error::NoSuchTxn(_) | Error::Config(_) => TargetErrorKind::Other,
    };
    TargetError {
        kind,
        message: error.to_string(),
    }
}

impl Target for EngineTarget {
    fn begin(&mut self) -> TargetResult<TxnHandle> {
        self.engine.begin().map_err(target_error)
    }

    fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()> {
        self.engine.put(txn, key, value).map_err(target_error)
    }

    fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()> {
        self.engine.delete(txn, key).map_err(target_error)
    }

    fn abort(&mut self, txn: TxnHandle) -> TargetResult<()> {
        self.engine.abort(txn).map_err(target_error)
    }

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        let ticket = self.engine.commit_enqueue(txn).map_err(target_error)?;
        self.pending.push(ticket);
        Ok(Some(ticket.lsn))
    }

    fn flush_begin(&mut self) -> TargetResult<()> {
        assert!(self.flush_target.is_none(), "flush_begin twice: driver bug");
        let target = self.engine.group_flush_begin().map_err(target_error)?;
        self.flush_target = Some(target);
        Ok(())
    }

    fn flush_finish(&mut self) -> TargetResult<()> {
        let target = self
            .flush_target
            .take()
            .expect("flush_finish without flush_begin: driver bug");
        self.engine
            .group_flush_finish(target)
            .map_err(target_error)?;
        Ok(())
    }

    fn tick(&mut self) -> TargetResult<()> {
        self.engine.tick().map_err(target_error)
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        self.engine.checkpoint().map_err(target_error)
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        let engine = &self.engine;
        let (acked, waiting): (Vec<CommitTicket>, Vec<CommitTicket>) = self
            .pending
            .iter()
            .partition(|ticket| engine.is_acknowledged(**ticket));
        self.pending = waiting;
        acked.into_iter().map(|ticket| ticket.txn).collect()
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        let txn = self.engine.begin().map_err(target_error)?;
        let value = self.engine.get(txn, key).map_err(target_error);
        self.engine.abort(txn).map_err(target_error)?;
        value
    }

    fn scan(&mut self) -> TargetResult<State> {
        Ok(self
            .engine
            .scan()
            .map_err(target_error)?
            .into_iter()
            .collect())
    }

    fn recovery_summary(&self) -> String {
        let report = self.engine.recovery_report();
        let names = if report.losers.is_empty() {
            BTreeMap::new()
        } else {
            self.storage.workload_txns(&report.losers)
        };
        describe_recovery(report, &names)
    }

    fn close(self: Box<Self>) -> TargetResult<()> {
        self.engine.close().map_err(target_error)
    }
}

/// The storage the engine runs on, which keeps a copy of every WAL segment
/// removed or recycled (renamed away) while `keeping` (during [`Engine::open`]), so the words about a
/// recovery can name its losers by the records it read: the checkpoint that
/// ends recovery removes the segments that held them. Everything else is
/// passed through unchanged (reads are not events of the recording storage,
/// so the trace stays the same).
struct KeepRemovedWal {
    inner: Arc<dyn Storage>,
    keeping: AtomicBool,
    /// `(segment name, its bytes)`, in removal order.
    removed: Mutex<Vec<(String, Vec<u8>)>>,
}

/// Records read from the WAL to name the losers, at most (the WAL of a
/// crash image is a few segments; this bounds a garbage one).
const LOSER_SCAN_RECORDS_MAX: usize = 1 << 20;

impl KeepRemovedWal {
    /// Keeps a copy of segment `name` about to leave its name, while keeping.
    fn keep_segment(&self, name: &str) {
        if self.keeping.load(Ordering::SeqCst)
            && ::engine::wal::parse_segment_name(name).is_some()
            && let Ok(bytes) = self.read_all(name)
        {
            let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            removed.push((name.to_string(), bytes));
        }
    }

    fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        let file = self.inner.open(name)?;
        let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        read_exact_at(file.as_ref(), 0, &mut bytes)?;
        Ok(bytes)
    }

    /// The workload's transaction id of each of `losers`, read from the
    /// tag of a value it wrote (an update's new value, or the value a CLR
    /// took away) in the WAL segments removed during recovery and those
    /// still there. A loser that only deleted keys has none.
    fn workload_txns(&self, losers: &[TxnId]) -> BTreeMap<TxnId, u64> {
        let mut segments: Vec<(String, Vec<u8>)> = self
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let live = self.inner.list().unwrap_or_default();
        for name in live
            .into_iter()
            .filter(|n| ::engine::wal::parse_segment_name(n).is_some())
        {
            if let Ok(bytes) = self.read_all(&name) {
                segments.push((name, bytes));
            }
        }
        let mut names = BTreeMap::new();
        let mut scanned = 0;
        for (name, bytes) in &segments {
            let start = ::engine::wal::parse_segment_name(name).expect("a segment name");
            let mut offset = 0;
            while offset < bytes.len() && scanned < LOSER_SCAN_RECORDS_MAX {
                let Ok(record) = record::decode(&bytes[offset..], start + offset as u64, true)
                else {
                    break;
                };
                scanned += 1;
                offset += record.encoded_len();
                let value = match &record.body {
                    Body::Update(update) => update.after,
                    Body::Clr { update, .. } => update.before,
                    _ => None,
                };
                if losers.contains(&record.txn)
                    && let Some(txn) = value.and_then(EngineTarget::workload_txn_of)
                {
                    names.entry(record.txn).or_insert(txn);
                }
            }
        }
        names
    }
}

impl EngineTarget {
    /// The workload transaction id a value carries: its first 8 bytes,
    /// little endian, as `oracle::tag` writes them (the target layer sits
    /// below the oracle, so it reads the id itself; `tests/explain.rs`
    /// checks the two agree).
    pub fn workload_txn_of(value: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(value.get(..8)?.try_into().ok()?))
    }
}

impl Storage for KeepRemovedWal {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        self.inner.create(name)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        self.inner.open(name)
    }

    /// A segment renamed away is recycled (moved to a future name, its old
    /// records still inside until overwritten): kept like a removed one.
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.keep_segment(from);
        self.inner.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.keep_segment(name);
        self.inner.remove(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }

    fn lock(&self) -> io::Result<StorageLock> {
        self.inner.lock()
    }
}

/// What recovery found, in words, one finding a line: where redo started,
/// where the log ended and why, what was cut off and repaired, and the
/// losers by the workload's transaction ids (`names`, from engine ids).
pub fn describe_recovery(report: &RecoveryReport, names: &BTreeMap<TxnId, u64>) -> String {
    if report.created {
        return "no database was there: recovery created a new, empty one".to_string();
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "redo started at LSN {:#x}, from the checkpoint at LSN {:#x}: it read {} WAL bytes, {} records, and redid {} of them (the others were already on their pages)",
        report.redo_start_lsn,
        report.checkpoint_lsn,
        report.wal_bytes_replayed,
        report.records_scanned,
        report.records_redone
    );
    let cut = match report.truncated_bytes {
        0 => "nothing was cut off".to_string(),
        bytes => format!("{bytes} bytes of torn tail were cut off"),
    };
    let _ = writeln!(
        text,
        "the log ends at LSN {:#x}: {}; {cut}",
        report.log_end_lsn,
        if report.log_end_reason.is_empty() {
            "no valid record follows"
        } else {
            &report.log_end_reason
        }
    );
    let _ = match report.pages_repaired.as_slice() {
        [] => writeln!(text, "no page needed repair"),
        pages => writeln!(
            text,
            "{} page(s) failed their checksum and were restored from full-page images: {}",
            pages.len(),
            pages
                .iter()
                .map(|p| format!("page {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if report.losers.is_empty() {
        let _ = write!(
            text,
            "no loser transaction: every transaction in the log had committed or aborted"
        );
        return text;
    }
    let losers: Vec<String> = report
        .losers
        .iter()
        .map(|engine_txn| match names.get(engine_txn) {
            Some(txn) => format!(
                "workload {} (engine txn {engine_txn})",
                crate::fault::trace::TxnName(*txn)
            ),
            None => format!(
                "engine txn {engine_txn} (no value of its own in the log names its workload txn)"
            ),
        })
        .collect();
    let _ = write!(
        text,
        "{} loser transaction(s), with no commit or abort record: {}; {} compensation record(s) (CLRs) undid {}",
        losers.len(),
        losers.join(", "),
        report.clrs_written,
        if losers.len() == 1 { "it" } else { "them" }
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_told_in_words_with_losers_by_workload_id() {
        let report = RecoveryReport {
            checkpoint_lsn: 0x200,
            redo_start_lsn: 0x180,
            log_end_lsn: 0x9000,
            log_end_reason: "bad CRC in record at LSN 0x9000".into(),
            truncated_bytes: 312,
            wal_bytes_replayed: 4096,
            records_scanned: 40,
            records_redone: 12,
            pages_repaired: vec![3, 7],
            losers: vec![5, 9],
            clrs_written: 4,
            ..RecoveryReport::default()
        };
        let text = describe_recovery(&report, &BTreeMap::from([(5, 4_294_967_301)]));
        for says in [
            "redo started at LSN 0x180, from the checkpoint at LSN 0x200",
            "redid 12 of them",
            "the log ends at LSN 0x9000: bad CRC in record at LSN 0x9000; 312 bytes of torn tail were cut off",
            "2 page(s) failed their checksum and were restored from full-page images: page 3, page 7",
            "2 loser transaction(s), with no commit or abort record: workload txn 4294967301 (engine txn 5), engine txn 9 (no value",
            "4 compensation record(s) (CLRs) undid them",
        ] {
            assert!(text.contains(says), "{says}\n{text}");
        }
        assert!(!text.contains("RecoveryReport"), "{text}");
        let clean = describe_recovery(&RecoveryReport::default(), &BTreeMap::new());
        assert!(
            clean.contains("nothing was cut off") && clean.contains("no loser"),
            "{clean}"
        );
        let created = RecoveryReport {
            created: true,
            ..RecoveryReport::default()
        };
        assert!(describe_recovery(&created, &BTreeMap::new()).contains("created a new"));
    }
}
