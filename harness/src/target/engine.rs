//! [`EngineTarget`]: the reference engine behind the [`Target`] seam.

use super::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetFactory, TargetKind,
    TargetMode, TargetResult, TxnHandle,
};
use crate::fault::FaultProfile;
use ::engine::storage::Storage;
use ::engine::{Clock, CommitTicket, Config, Engine, Error, FlushTarget, FsyncPolicy};
use std::sync::Arc;

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
        let engine = Engine::open(storage, self.config.clone(), clock).map_err(target_error)?;
        Ok(Box::new(EngineTarget {
            engine,
            pending: Vec::new(),
            flush_target: None,
        }))
    }
}

/// The reference engine, driven deterministically through its commit-ticket
/// API.
pub struct EngineTarget {
    engine: Engine,
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
        format!("{:?}", self.engine.recovery_report())
    }

    fn close(self: Box<Self>) -> TargetResult<()> {
        self.engine.close().map_err(target_error)
    }
}
