//! Steady-state starts (SPEC §9): before a trial's first cycle, the target
//! is opened on a fresh in-memory disk, initialises it, commits a few
//! seeded transactions and is closed cleanly (its clean shutdown syncs).
//! That disk — everything on it, as an uncrashed run leaves it — and the
//! state scanned before the close become the trial's base disk and base
//! state, as a later cycle continues from a crash image.
//!
//! The target is opened in a forked child, as a workload cycle is: a
//! process target mounts its data directory in the child's private mount
//! namespace.

use super::child::{self, Received};
use super::trial::Chain;
use super::workload_child::WORKLOAD_TIME_MAX;
use crate::fault::trace::VecSink;
use crate::target::{State, TargetFactory};
use crate::workload::{CycleSpec, open_target, run_cycle};
use engine::VirtualClock;
use engine::storage::MemStorage;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Transactions the steady-state run begins at most.
pub const STEADY_TXNS_MAX: u32 = 8;

const OK: u8 = 0;
const FAILED: u8 = 1;

/// The base a steady-state trial starts from: the disk and state `factory`
/// leaves after a clean run of at most [`STEADY_TXNS_MAX`] transactions of
/// `spec`, seeded by `seed`.
pub fn steady_chain(
    factory: &dyn TargetFactory,
    spec: &CycleSpec,
    seed: u64,
) -> Result<Chain, String> {
    let mut child = child::spawn(|out| {
        let frame = match settle(factory, spec, seed) {
            Ok((image, state)) => encode(&image, &state),
            Err(problem) => [&[FAILED][..], problem.as_bytes()].concat(),
        };
        let _ = out.send(&frame);
        0
    })
    .map_err(|e| format!("cannot fork the steady-state child: {e}"))?;
    let received = child
        .recv(WORKLOAD_TIME_MAX)
        .map_err(|e| format!("steady-state child pipe: {e}"))?;
    let end = child
        .kill_and_wait()
        .map_err(|e| format!("cannot reap the steady-state child: {e}"))?;
    match received {
        Received::Frame(frame) => decode(&frame),
        Received::TimedOut => Err(format!(
            "the steady-state run did not finish within {}s",
            WORKLOAD_TIME_MAX.as_secs()
        )),
        Received::Closed => Err(format!("the steady-state child died ({end})")),
    }
}

/// In the child: opens, writes, scans and closes the target on a fresh disk
/// (its starting image, for a target that needs one).
fn settle(
    factory: &dyn TargetFactory,
    spec: &CycleSpec,
    seed: u64,
) -> Result<(BTreeMap<String, Vec<u8>>, State), String> {
    let storage = Arc::new(MemStorage::from_files(factory.starting_image()?));
    let sink = VecSink::new();
    let clock = Arc::new(VirtualClock::new(0));
    let mut target = open_target(factory, storage.clone(), clock.clone(), &sink)
        .map_err(|e| format!("the steady-state run cannot open the target: {e}"))?;
    let mut spec = spec.clone();
    spec.params.txns_per_cycle = spec.params.txns_per_cycle.min(STEADY_TXNS_MAX);
    run_cycle(
        target.as_mut(),
        &spec,
        seed,
        &State::new(),
        &sink,
        &clock,
        0,
    );
    let state = target
        .scan()
        .map_err(|e| format!("the steady-state run cannot scan: {e}"))?;
    target
        .close()
        .map_err(|e| format!("the steady-state run cannot close the target cleanly: {e}"))?;
    Ok((storage.snapshot(), state))
}

fn put(frame: &mut Vec<u8>, bytes: &[u8]) {
    frame.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    frame.extend_from_slice(bytes);
}

fn encode(image: &BTreeMap<String, Vec<u8>>, state: &State) -> Vec<u8> {
    let mut frame = vec![OK];
    frame.extend_from_slice(&(image.len() as u64).to_le_bytes());
    for (path, data) in image {
        put(&mut frame, path.as_bytes());
        put(&mut frame, data);
    }
    for (key, value) in state {
        put(&mut frame, key);
        put(&mut frame, value);
    }
    frame
}

fn decode(frame: &[u8]) -> Result<Chain, String> {
    let (&tag, rest) = frame.split_first().ok_or_else(corrupt)?;
    if tag == FAILED {
        return Err(String::from_utf8_lossy(rest).into_owned());
    }
    let mut reader = Reader { rest };
    let mut chain = Chain::default();
    for _ in 0..reader.number()? {
        let path = String::from_utf8(reader.bytes()?.to_vec()).map_err(|_| corrupt())?;
        chain.image.insert(path, reader.bytes()?.to_vec());
    }
    while !reader.rest.is_empty() {
        let key = reader.bytes()?.to_vec();
        chain.state.insert(key, reader.bytes()?.to_vec());
    }
    Ok(chain)
}

fn corrupt() -> String {
    "the steady-state child sent a malformed frame".to_string()
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < len {
            return Err(corrupt());
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn number(&mut self) -> Result<usize, String> {
        let bytes: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
        usize::try_from(u64::from_le_bytes(bytes)).map_err(|_| corrupt())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.number()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_survives_the_pipe() {
        let image = BTreeMap::from([
            ("appendonlydir/a.aof".to_string(), b"*1\r\n".to_vec()),
            ("empty".to_string(), Vec::new()),
        ]);
        let state = State::from([(b"k".to_vec(), b"v".to_vec()), (b"e".to_vec(), Vec::new())]);
        let chain = decode(&encode(&image, &state)).unwrap();
        assert_eq!((chain.image, chain.state), (image, state));
        assert!(chain.crashes.is_empty());
        assert!(decode(&encode(&BTreeMap::new(), &State::new())[..3]).is_err());
        assert_eq!(decode(b"\x01no redis").unwrap_err(), "no redis");
    }
}
