//! Failures told in words: the trace, what the crash did to volatile writes,
//! what recovery found, and the violations.

use crate::case::bundle::show_bytes;
use crate::case::id::CaseId;
use crate::fault::image::{ChangeFate, ChangeWhat, FateLog, MediaFault, SectorFate};
use crate::fault::trace::{Event, TxnName};
use crate::oracle::tag::read_tag;
use crate::oracle::{History, Violation};
use crate::target::State;
use std::fmt::Write as _;

/// One trace event on one line.
pub fn describe_event(event: &Event) -> String {
    match event {
        Event::Create { name, file } => format!("create {name} (file #{file})"),
        Event::Write { file, offset, data } => {
            format!("write file #{file} offset {offset} len {}", data.len())
        }
        Event::SetLen { file, len } => format!("set_len file #{file} to {len}"),
        Event::SyncData { file, failed } => {
            format!("sync_data file #{file}{}", failed_text(*failed))
        }
        Event::SyncAll { file, failed } => format!("sync_all file #{file}{}", failed_text(*failed)),
        Event::Rename { from, to, file } => format!("rename {from} -> {to} (file #{file})"),
        Event::Remove { name, file } => format!("remove {name} (file #{file})"),
        Event::Link { from, to, file } => format!("link {from} -> {to} (file #{file})"),
        Event::SyncDir { dir, failed } if dir.is_empty() => {
            format!("sync_dir{}", failed_text(*failed))
        }
        Event::SyncDir { dir, failed } => format!("sync_dir {dir}{}", failed_text(*failed)),
        Event::CreateDir { path } => format!("create_dir {path}"),
        Event::RemoveDir { path } => format!("remove_dir {path}"),
        Event::CommitIssued { txn, writes } => {
            let keys: Vec<String> = writes
                .iter()
                .map(|(key, value)| {
                    let key = crate::case::bundle::show_bytes(key);
                    match value {
                        Some(value) => format!("{key}={}B", value.len()),
                        None => format!("{key}=deleted"),
                    }
                })
                .collect();
            format!("COMMIT ISSUED {}: {}", TxnName(*txn), keys.join(", "))
        }
        Event::CommitLogged { txn, lsn } => match lsn {
            Some(lsn) => format!("commit record of {} at LSN {lsn:#x}", TxnName(*txn)),
            None => format!("commit of {} returned", TxnName(*txn)),
        },
        Event::Acked { txn, now_us } => format!("ACK {} at t={now_us}us", TxnName(*txn)),
        Event::CommitFailed { txn } => format!("commit of {} FAILED", TxnName(*txn)),
        Event::CheckpointIssued => "checkpoint issued".to_string(),
        Event::CheckpointAcked => "checkpoint acknowledged (durable point)".to_string(),
        Event::OpenIssued => "open (recovery starts)".to_string(),
        Event::Opened => "opened (recovery finished)".to_string(),
    }
}

fn failed_text(failed: bool) -> &'static str {
    if failed { " FAILED (EIO)" } else { "" }
}

fn describe_change(what: &ChangeWhat) -> String {
    match what {
        ChangeWhat::Write { offset, len } => format!("write of {len} bytes at offset {offset}"),
        ChangeWhat::SetLen { len } => format!("size change to {len}"),
        ChangeWhat::Create { name } => format!("create of {name}"),
        ChangeWhat::Rename { from, to } => format!("rename {from} -> {to}"),
        ChangeWhat::Remove { name } => format!("remove of {name}"),
        ChangeWhat::Link { from, to } => format!("link {from} -> {to}"),
        ChangeWhat::CreateDir { path } => format!("creation of directory {path}"),
        ChangeWhat::RemoveDir { path } => format!("removal of directory {path}"),
    }
}

fn describe_fate(fate: &ChangeFate, offset: u64, sector_size: u64) -> String {
    match fate {
        ChangeFate::Dropped => "DROPPED".to_string(),
        ChangeFate::Persisted => "kept".to_string(),
        ChangeFate::Torn(sectors) => {
            let first_sector = offset / sector_size;
            let parts: Vec<String> = sectors
                .iter()
                .enumerate()
                .map(|(i, sector)| {
                    let at = first_sector + i as u64;
                    match sector {
                        SectorFate::Kept => format!("s{at} new"),
                        SectorFate::Lost => format!("s{at} old"),
                        SectorFate::Garbage(_) => format!("s{at} GARBAGE"),
                    }
                })
                .collect();
            format!("TORN [{}]", parts.join(" "))
        }
    }
}

/// The crash's effect on volatile data, one change a line.
pub fn describe_fates(fates: &FateLog) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Crash at operation {} under {} ({} volatile change(s), sector size {}):",
        fates.crash_point,
        fates.profile,
        fates.changes.len(),
        fates.sector_size
    );
    for change in &fates.changes {
        let offset = match change.what {
            ChangeWhat::Write { offset, .. } => offset,
            _ => 0,
        };
        let _ = writeln!(
            text,
            "  op {:>6}: {} {}: {}",
            change.event_index,
            change.name,
            describe_change(&change.what),
            describe_fate(&change.fate, offset, fates.sector_size)
        );
    }
    for lost in &fates.lost_to_failed_sync {
        let _ = writeln!(
            text,
            "  op {:>6}: {} {}: dropped by the failed sync at op {}",
            lost.event_index,
            lost.name,
            describe_change(&lost.what),
            lost.failed_sync_index
        );
    }
    match &fates.media {
        Some(MediaFault::BitFlip { file, offset, bit }) => {
            let _ = writeln!(
                text,
                "  media: bit {bit} flipped in {file} at offset {offset}"
            );
        }
        Some(MediaFault::Misdirected {
            file,
            source_sector,
            target_sector,
        }) => {
            let _ = writeln!(
                text,
                "  media: sector {source_sector} of {file} also written over sector {target_sector}"
            );
        }
        None => {}
    }
    text
}

/// One past the last acknowledged commit: the prefix a full recovery of
/// every acknowledgement would show.
pub fn acked_prefix(history: &History) -> usize {
    history
        .txns()
        .iter()
        .rposition(|txn| txn.ack.is_some())
        .map_or(0, |last| last + 1)
}

/// How many workload events before the crash the story shows.
pub const STORY_EVENTS_MAX: usize = 16;

/// Everything the story of one failing crash state is told from.
pub struct Story<'a> {
    pub case: &'a CaseId,
    /// The cycle's events up to the crash point.
    pub events: &'a [Event],
    pub history: &'a History,
    pub fates: &'a FateLog,
    pub recovery_summary: &'a str,
    pub violations: &'a [Violation],
    pub recovered: Option<&'a State>,
    pub segment_size: u64,
}

impl Story<'_> {
    /// The failure in words, from the data.
    pub fn tell(&self) -> String {
        let mut text = String::new();
        let case = self.case;
        let _ = writeln!(
            text,
            "Case {case}\n  scenario {}, workload {}, target {}, fault {}, seed {}, trial {}, cycle {} of {}{}\n",
            case.scenario,
            case.workload,
            case.target,
            case.fault,
            case.seed,
            case.trial,
            case.cycle() + 1,
            case.crashes.len(),
            if case.bugs.is_empty() && case.vfs_bugs.is_empty() {
                String::new()
            } else {
                format!(
                    ", planted bugs: {}",
                    case.bugs
                        .iter()
                        .map(|b| b.name())
                        .chain(case.vfs_bugs.iter().map(|b| b.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = writeln!(text, "What went wrong:");
        for violation in self.violations {
            let _ = writeln!(text, "  {}: {}", violation.kind, violation.message);
            for lsn in &violation.lsns {
                let _ = writeln!(text, "    {}", self.locate(*lsn));
            }
        }
        let _ = writeln!(text);
        self.tell_workload(&mut text);
        let _ = writeln!(text);
        text.push_str(&describe_fates(self.fates));
        let _ = writeln!(text);
        let _ = writeln!(text, "What recovery found:");
        for line in self.recovery_summary.lines() {
            let _ = writeln!(text, "  {line}");
        }
        let _ = writeln!(text);
        self.tell_keys(&mut text);
        text
    }

    /// Where the record at `lsn` lives: segment file and offset.
    fn locate(&self, lsn: u64) -> String {
        let start = lsn - lsn % self.segment_size.max(1);
        format!(
            "its commit record: LSN {lsn:#x} = {} offset {}",
            engine::wal::segment_name(start),
            lsn - start
        )
    }

    fn tell_workload(&self, text: &mut String) {
        let workload: Vec<(usize, &Event)> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, event)| !is_storage(event))
            .collect();
        let skip = workload.len().saturating_sub(STORY_EVENTS_MAX);
        let _ = writeln!(
            text,
            "The workload before the crash at operation {} ({} commit(s) issued, {} acknowledged; last {} events):",
            self.events.len(),
            self.history.txns().len(),
            self.history
                .txns()
                .iter()
                .filter(|t| t.ack.is_some())
                .count(),
            workload.len() - skip
        );
        for (index, event) in workload.into_iter().skip(skip) {
            let _ = writeln!(text, "  op {index:>6}: {}", describe_event(event));
        }
    }

    fn tell_keys(&self, text: &mut String) {
        let mut keys: Vec<&Vec<u8>> = self.violations.iter().flat_map(|v| v.keys.iter()).collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        let expected = self.history.state_after(acked_prefix(self.history));
        let show = |value: Option<&Vec<u8>>| match value {
            None => "(absent)".to_string(),
            Some(value) => match read_tag(value) {
                Some(tag) => format!(
                    "value of {} write #{} ({} bytes)",
                    TxnName(tag.txn),
                    tag.write_index,
                    value.len()
                ),
                None => show_bytes(value),
            },
        };
        let _ = writeln!(
            text,
            "Affected keys (expected after every acknowledged commit / recovered):"
        );
        for key in keys {
            let recovered = self.recovered.and_then(|state| state.get(key));
            let _ = writeln!(
                text,
                "  {}: expected {} / recovered {}",
                show_bytes(key),
                show(expected.get(key)),
                if self.recovered.is_some() {
                    show(recovered)
                } else {
                    "(no state: recovery failed)".to_string()
                }
            );
        }
    }
}

fn is_storage(event: &Event) -> bool {
    matches!(
        event,
        Event::Create { .. }
            | Event::Write { .. }
            | Event::SetLen { .. }
            | Event::SyncData { .. }
            | Event::SyncAll { .. }
            | Event::Rename { .. }
            | Event::Remove { .. }
            | Event::Link { .. }
            | Event::SyncDir { .. }
            | Event::CreateDir { .. }
            | Event::RemoveDir { .. }
    )
}
