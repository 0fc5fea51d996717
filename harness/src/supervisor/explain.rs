//! Failures told in words: the trace, what the crash did to volatile writes,
//! what recovery found, and the violations.

use crate::fault::image::{ChangeFate, ChangeWhat, FateLog, MediaFault, SectorFate};
use crate::fault::trace::Event;
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
        Event::SyncDir { failed } => format!("sync_dir{}", failed_text(*failed)),
        Event::CommitIssued { txn, writes } => {
            let keys: Vec<String> = writes
                .iter()
                .map(|(key, value)| {
                    let key = crate::report::bundle::show_bytes(key);
                    match value {
                        Some(value) => format!("{key}={}B", value.len()),
                        None => format!("{key}=deleted"),
                    }
                })
                .collect();
            format!("COMMIT ISSUED txn {txn}: {}", keys.join(", "))
        }
        Event::CommitLogged { txn, lsn } => match lsn {
            Some(lsn) => format!("commit record of txn {txn} at LSN {lsn:#x}"),
            None => format!("commit of txn {txn} returned"),
        },
        Event::Acked { txn, now_us } => format!("ACK txn {txn} at t={now_us}us"),
        Event::CommitFailed { txn } => format!("commit of txn {txn} FAILED"),
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

/// The explanation a bundle carries.
pub fn explain(fates: &FateLog, recovery_summary: &str, violations: &[String]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Violations:");
    for violation in violations {
        let _ = writeln!(text, "  {violation}");
    }
    let _ = writeln!(text);
    text.push_str(&describe_fates(fates));
    let _ = writeln!(text);
    let _ = writeln!(text, "Recovery: {recovery_summary}");
    text
}
