//! Tests of the simulated disk. Traces are produced by driving a
//! [`RecordingStorage`] (so the recording layer is exercised too), then cut
//! at crash points and checked against what SPEC §3 allows.

use super::FaultProfile;
use super::exhaustive::{Exhaustive, sync_windows};
use super::image::{
    ChangeFate, CrashImage, ExplicitFates, FaultChoices, ImageBuilder, ImageError, MediaFault,
    SectorFate, build_image,
};
use super::points::{CrashPlace, candidates, choose_crash_points};
use super::recording::{FaultPlan, RecordingStorage};
use super::shm::{
    SharedTrace, TraceDecodeError, decode_entries, decode_timed_entries, encode_entry,
    encode_entry_at,
};
use super::trace::{Event, EventSink, NOT_RECORDED, VecSink};
use engine::storage::{MemStorage, Storage, StorageFile};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const SECTOR: u64 = 512;
const SEEDS_MAX: u64 = 256;
const LOSSY: [FaultProfile; 5] = [
    FaultProfile::PowerLoss,
    FaultProfile::PowerLossOrdered,
    FaultProfile::TornGarbage,
    FaultProfile::FsyncError,
    FaultProfile::Media,
];

type Files = BTreeMap<String, Vec<u8>>;

/// A recording storage over `base` and the sink it records into.
fn recorder(base: &Files, plan: FaultPlan) -> (RecordingStorage, Arc<VecSink>) {
    let sink = Arc::new(VecSink::new());
    let storage = RecordingStorage::from_base(base.clone(), sink.clone(), plan);
    (storage, sink)
}

fn files(entries: &[(&str, &[u8])]) -> Files {
    entries
        .iter()
        .map(|(name, data)| (name.to_string(), data.to_vec()))
        .collect()
}

fn image(base: &Files, events: &[Event], profile: FaultProfile, seed: u64) -> Files {
    whole_image(base, events, profile, &FaultChoices::Seeded(seed)).files
}

/// The image after every event of `events` (files and directories).
fn whole_image(
    base: &Files,
    events: &[Event],
    profile: FaultProfile,
    choices: &FaultChoices,
) -> CrashImage {
    build_image(base, events, events.len(), profile, SECTOR, choices).expect("image builds")
}

fn images_over_seeds(base: &Files, events: &[Event], profile: FaultProfile) -> Vec<Files> {
    (0..SEEDS_MAX)
        .map(|seed| image(base, events, profile, seed))
        .collect()
}

// --- recording storage ---

#[test]
fn recording_numbers_files_and_records_only_mutations() {
    let base = files(&[("b", b"bbb"), ("a", b"aaa")]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    let b = storage.open("b").unwrap();
    let mut buf = [0u8; 3];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(storage.list().unwrap(), vec!["a", "b"]);
    assert!(
        sink.events().is_empty(),
        "reads, opens and lists are not recorded"
    );
    let c = storage.create("c").unwrap();
    c.write_at(0, b"cc").unwrap();
    storage.rename("c", "d").unwrap();
    storage.remove("d").unwrap();
    c.write_at(2, b"!").unwrap(); // a removed file's handle keeps working
    c.sync_data().unwrap();
    b.set_len(1).unwrap();
    b.sync_all().unwrap();
    storage.sync_dir().unwrap();
    let expected = vec![
        Event::Create {
            name: "c".into(),
            file: 2,
        },
        Event::Write {
            file: 2,
            offset: 0,
            data: b"cc".to_vec(),
        },
        Event::Rename {
            from: "c".into(),
            to: "d".into(),
            file: 2,
        },
        Event::Remove {
            name: "d".into(),
            file: 2,
        },
        Event::Write {
            file: 2,
            offset: 2,
            data: b"!".to_vec(),
        },
        Event::SyncData {
            file: 2,
            failed: false,
        },
        Event::SetLen { file: 1, len: 1 },
        Event::SyncAll {
            file: 1,
            failed: false,
        },
        Event::SyncDir {
            dir: String::new(),
            failed: false,
        },
    ];
    assert_eq!(sink.events(), expected);
    assert_eq!(
        storage.live().snapshot(),
        files(&[("a", b"aaa"), ("b", b"b")])
    );
}

#[test]
fn recording_fails_the_chosen_sync_with_eio_and_keeps_the_page_cache() {
    let (storage, sink) = recorder(
        &Files::new(),
        FaultPlan {
            fail_sync: Some(1),
            stop_at: None,
        },
    );
    let f = storage.create("f").unwrap();
    storage.sync_dir().unwrap(); // sync #0
    f.write_at(0, b"data").unwrap();
    let error = f.sync_data().expect_err("sync #1 fails");
    assert_eq!(error.raw_os_error(), Some(libc::EIO));
    f.sync_data().expect("sync #2 succeeds");
    let events = sink.events();
    assert_eq!(
        events[3],
        Event::SyncData {
            file: 0,
            failed: true
        }
    );
    assert_eq!(
        events[4],
        Event::SyncData {
            file: 0,
            failed: false
        }
    );
    assert_eq!(storage.live().snapshot()["f"], b"data");
}

#[test]
fn recording_stops_before_the_operation_at_stop_at() {
    let sink = Arc::new(VecSink::new());
    let stops = Arc::new(Mutex::new(Vec::new()));
    let seen = stops.clone();
    let hook = Box::new(move |index: u64| seen.lock().unwrap().push(index));
    let plan = FaultPlan {
        fail_sync: None,
        stop_at: Some(2),
    };
    let storage = RecordingStorage::new(MemStorage::new(), sink.clone(), plan, Some(hook));
    let f = storage.create("f").unwrap(); // 0
    f.write_at(0, b"one").unwrap(); // 1
    assert!(f.write_at(3, b"two").is_err(), "event 2 is not performed");
    assert!(f.sync_data().is_err(), "the storage stays stopped");
    assert_eq!(*stops.lock().unwrap(), vec![2], "the hook runs once");
    assert_eq!(storage.stopped_at(), Some(2));
    assert_eq!(sink.events().len(), 2);
    assert_eq!(
        storage.live().snapshot()["f"],
        b"one",
        "the stopped write did not happen"
    );
}

// --- crash images: power loss ---

/// A file `f` whose create is durable, with `durable` synced and then
/// `volatile` written after it (not synced).
fn synced_then_unsynced(durable: &[u8], volatile: &[u8]) -> (Files, Vec<Event>, Files) {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    let f = storage.create("f").unwrap();
    storage.sync_dir().unwrap();
    f.write_at(0, durable).unwrap();
    f.sync_data().unwrap();
    f.write_at(durable.len() as u64, volatile).unwrap();
    (Files::new(), sink.events(), storage.live().snapshot())
}

#[test]
fn power_loss_may_drop_unsynced_writes_and_never_synced_ones() {
    let (base, events, live) = synced_then_unsynced(b"synced", b"volatile");
    for profile in LOSSY {
        let images = images_over_seeds(&base, &events, profile);
        // Media flips one durable bit: it is checked on its own below.
        let synced_kept =
            |i: &Files| profile == FaultProfile::Media || i["f"].starts_with(b"synced");
        assert!(
            images.iter().all(synced_kept),
            "{profile}: the synced write survives every seed"
        );
        assert!(images.iter().all(|i| i["f"].len() >= b"synced".len()));
        // The volatile write is an append: its fate shows in the length.
        let dropped = |i: &Files| i["f"].len() == b"synced".len();
        let kept = |i: &Files| i["f"].len() == live["f"].len();
        assert!(
            images.iter().any(dropped),
            "{profile}: some seed drops the unsynced write"
        );
        assert!(images.iter().any(kept), "{profile}: some seed keeps it");
    }
}

#[test]
fn an_unsynced_create_can_vanish_and_a_synced_one_cannot() {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    storage.create("kept").unwrap();
    storage.sync_dir().unwrap();
    storage.create("maybe").unwrap().sync_all().unwrap(); // data sync: not the entry
    let images = images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss);
    assert!(images.iter().all(|i| i.contains_key("kept")));
    assert!(images.iter().any(|i| !i.contains_key("maybe")));
    assert!(images.iter().any(|i| i.contains_key("maybe")));
}

#[test]
fn an_unsynced_rename_can_revert_and_a_remove_be_undone() {
    let base = files(&[("control", b"old"), ("junk", b"junk")]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    let tmp = storage.create("control.tmp").unwrap();
    tmp.write_at(0, b"new").unwrap();
    tmp.sync_data().unwrap();
    storage.rename("control.tmp", "control").unwrap();
    storage.remove("junk").unwrap();
    let images = images_over_seeds(&base, &sink.events(), FaultProfile::PowerLoss);
    for image in &images {
        let control = image.get("control").map(Vec::as_slice);
        assert!(
            matches!(control, Some(b"old") | Some(b"new")),
            "control is old or new: {control:?}"
        );
    }
    assert!(
        images.iter().any(|i| i["control"] == b"old"),
        "the rename can revert"
    );
    assert!(
        images.iter().any(|i| i["control"] == b"new"),
        "the rename can persist"
    );
    assert!(
        images.iter().any(|i| i.contains_key("junk")),
        "the remove can be undone"
    );
    assert!(
        images.iter().any(|i| !i.contains_key("junk")),
        "the remove can persist"
    );
}

// --- subdirectories ---

/// The Redis pattern: a directory is created in the root, a file in it is
/// written, synced, and its entry synced by a sync of the directory; the
/// root is never synced. The directory's own entry is volatile, so a power
/// cut may lose the directory and every synced file in it; a process crash
/// never does.
#[test]
fn an_unsynced_directory_creation_can_take_its_synced_files_with_it() {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    storage.create_dir("aof").unwrap();
    let file = storage.create("aof/log").unwrap();
    file.write_at(0, b"SET").unwrap();
    file.sync_data().unwrap();
    storage.sync_dir_at("aof").unwrap();
    let events = sink.events();
    let images: Vec<_> = (0..SEEDS_MAX)
        .map(|seed| {
            whole_image(
                &Files::new(),
                &events,
                FaultProfile::PowerLoss,
                &FaultChoices::Seeded(seed),
            )
        })
        .collect();
    for image in &images {
        let has_dir = image.dirs.contains("aof");
        assert_eq!(
            image.files.get("aof/log").map(Vec::as_slice),
            has_dir.then_some(b"SET".as_slice()),
            "the synced file is there, whole, exactly when its directory is"
        );
    }
    assert!(images.iter().any(|i| i.dirs.contains("aof")));
    assert!(images.iter().any(|i| !i.dirs.contains("aof")));
    let process = whole_image(
        &Files::new(),
        &events,
        FaultProfile::ProcessCrash,
        &FaultChoices::Seeded(0),
    );
    assert_eq!(process.files, files(&[("aof/log", b"SET")]));
    assert!(process.dirs.contains("aof"));
}

/// A sync of one directory covers the entries of that directory only; a
/// rename across two directories is covered by either.
#[test]
fn a_directory_sync_covers_its_own_entries_only() {
    let base = files(&[("d/old", b"o")]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    storage.create("d/inner").unwrap();
    storage.sync_dir_at("d").unwrap();
    storage.rename("d/old", "moved").unwrap();
    storage.sync_dir_at("d").unwrap();
    storage.create_dir("e").unwrap();
    storage.sync_dir().unwrap();
    storage.create("top").unwrap();
    storage.create("e/late").unwrap();
    storage.remove_dir("d").unwrap_err(); // not empty
    let events = sink.events();
    let nothing = FaultChoices::Explicit(ExplicitFates::default());
    let image = whole_image(&base, &events, FaultProfile::PowerLoss, &nothing);
    assert_eq!(
        image.files.keys().collect::<Vec<_>>(),
        vec!["d/inner", "moved"],
        "d's syncs kept d/inner and the rename out of d; the root's sync kept e; \
         `top` and `e/late` came after the last sync of their directory: {image:?}"
    );
    assert!(image.dirs.contains("d") && image.dirs.contains("e"));
}

/// Redis 7 creates its base file in the data directory, renames it into
/// `appendonlydir/` and syncs only `appendonlydir/`: the synced rename
/// must keep the file under its new name, whatever happens to the unsynced
/// create before it (which the sync covers too: a file's names change in
/// order).
#[test]
fn a_synced_rename_keeps_the_file_whose_create_was_in_an_unsynced_directory() {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    storage.create_dir("aof").unwrap();
    storage.sync_dir().unwrap();
    let base = storage.create("temp-base").unwrap();
    base.write_at(0, b"BASE").unwrap();
    base.sync_all().unwrap();
    storage.rename("temp-base", "aof/base").unwrap();
    storage.sync_dir_at("aof").unwrap();
    let events = sink.events();
    for seed in 0..SEEDS_MAX {
        let image = image(&Files::new(), &events, FaultProfile::PowerLoss, seed);
        assert_eq!(image, files(&[("aof/base", b"BASE")]), "seed {seed}");
    }
}

#[test]
fn a_removed_directory_may_come_back_until_its_parent_is_synced() {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    storage.create_dir("x").unwrap();
    storage.sync_dir().unwrap();
    storage.remove_dir("x").unwrap();
    let events = sink.events();
    let dirs_at = |fates: ExplicitFates| {
        whole_image(
            &Files::new(),
            &events,
            FaultProfile::PowerLoss,
            &FaultChoices::Explicit(fates),
        )
        .dirs
    };
    assert!(dirs_at(ExplicitFates::default()).contains("x"));
    let removal = ExplicitFates {
        changes: BTreeMap::from([(2, ChangeFate::Persisted)]),
        media: None,
    };
    assert!(dirs_at(removal).is_empty());
}

// --- hard links ---

/// A file `f` with synced data and a synced name, then `link f g`.
fn linked() -> (RecordingStorage, Arc<VecSink>, Box<dyn StorageFile>) {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    let file = storage.create("f").unwrap();
    file.write_at(0, b"data").unwrap();
    file.sync_data().unwrap();
    storage.sync_dir().unwrap();
    storage.link("f", "g").unwrap();
    (storage, sink, file)
}

/// A link is a new directory entry: until its directory is synced a power
/// cut may drop it (the file keeps its first name) or keep it (the new
/// name reaches the same bytes); after the sync every image has it. A
/// process crash keeps it.
#[test]
fn an_unsynced_link_may_vanish_and_a_synced_one_stays() {
    let (storage, sink, _file) = linked();
    let before_sync = sink.events();
    assert_eq!(
        before_sync.last(),
        Some(&Event::Link {
            from: "f".into(),
            to: "g".into(),
            file: 0,
        })
    );
    let images = images_over_seeds(&Files::new(), &before_sync, FaultProfile::PowerLoss);
    let both = files(&[("f", b"data"), ("g", b"data")]);
    let first_only = files(&[("f", b"data")]);
    assert!(images.iter().all(|i| *i == both || *i == first_only));
    assert!(images.contains(&both), "the link can persist");
    assert!(images.contains(&first_only), "the link can vanish");
    assert_eq!(
        image(&Files::new(), &before_sync, FaultProfile::ProcessCrash, 0),
        both
    );
    storage.sync_dir().unwrap();
    let images = images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss);
    assert!(images.iter().all(|i| *i == both), "a synced link stays");
}

/// Two names share one file: a write through the new name is the file's
/// write (synced by a sync of either name), and every surviving name reads
/// the same bytes.
#[test]
fn a_write_through_one_name_is_seen_through_the_other() {
    let (storage, sink, first) = linked();
    storage.sync_dir().unwrap();
    let second = storage.open("g").unwrap();
    assert_eq!(second.link_count().unwrap(), 2);
    second.write_at(0, b"DA").unwrap();
    let unsynced = sink.events();
    for image in images_over_seeds(&Files::new(), &unsynced, FaultProfile::PowerLoss) {
        assert_eq!(image["f"], image["g"], "one file, one set of bytes");
        assert!(image["f"] == b"data" || image["f"] == b"DAta");
    }
    first.sync_data().unwrap();
    for image in images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss) {
        assert_eq!(image, files(&[("f", b"DAta"), ("g", b"DAta")]));
    }
}

/// Removing one name keeps the data under the other; an unsynced remove
/// may be undone, never taking the other name with it.
#[test]
fn unlinking_one_name_keeps_the_data_under_the_other() {
    let (storage, sink, _file) = linked();
    storage.sync_dir().unwrap();
    storage.remove("f").unwrap();
    assert_eq!(storage.open("g").unwrap().link_count().unwrap(), 1);
    let images = images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss);
    assert!(
        images
            .iter()
            .all(|i| i.get("g").map(Vec::as_slice) == Some(b"data"))
    );
    assert!(
        images.iter().any(|i| !i.contains_key("f")),
        "the remove can persist"
    );
    assert!(
        images.iter().any(|i| i.contains_key("f")),
        "the remove can be undone"
    );
}

/// A rename of one name of a linked file moves that name only: the other
/// name stays whatever happens to the rename; the renamed name is at its
/// old place or its new one, never both, never neither.
#[test]
fn a_rename_of_one_name_leaves_the_other_name_alone() {
    let (storage, sink, _file) = linked();
    storage.sync_dir().unwrap();
    storage.rename("g", "h").unwrap();
    // rename(2) between two names of one file does nothing and is no change.
    storage.rename("h", "f").unwrap();
    let events = sink.events();
    let mut builder = ImageBuilder::new(&Files::new(), &events, SECTOR);
    builder.advance_to(events.len()).unwrap();
    assert_eq!(
        builder.pending_event_indexes().len(),
        1,
        "one rename pending"
    );
    let images = images_over_seeds(&Files::new(), &events, FaultProfile::PowerLoss);
    for image in &images {
        assert_eq!(image.get("f").map(Vec::as_slice), Some(&b"data"[..]));
        assert!(
            image.contains_key("g") != image.contains_key("h"),
            "{image:?}"
        );
    }
    assert!(images.iter().any(|i| i.contains_key("g")));
    assert!(images.iter().any(|i| i.contains_key("h")));
}

/// A link in a directory other than its source's is covered by a sync of
/// its own directory, not of the source's.
#[test]
fn a_link_is_covered_by_a_sync_of_its_own_directory() {
    let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
    storage.create_dir("d").unwrap();
    storage.create("f").unwrap().sync_all().unwrap();
    storage.sync_dir().unwrap();
    storage.link("f", "d/g").unwrap();
    storage.sync_dir().unwrap();
    let images = images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss);
    assert!(
        images.iter().any(|i| !i.contains_key("d/g")),
        "a root sync does not cover d/"
    );
    storage.sync_dir_at("d").unwrap();
    let images = images_over_seeds(&Files::new(), &sink.events(), FaultProfile::PowerLoss);
    assert!(images.iter().all(|i| i.contains_key("d/g")));
}

/// `f` holds 4 durable sectors of 0xAA; then one unsynced write of 4
/// sectors of 0xBB over them.
fn four_sector_overwrite() -> (Files, Vec<Event>) {
    let base = files(&[("f", &[0xAA; 4 * SECTOR as usize])]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    storage
        .open("f")
        .unwrap()
        .write_at(0, &[0xBB; 4 * SECTOR as usize])
        .unwrap();
    (base, sink.events())
}

fn sector_kinds(data: &[u8]) -> Vec<u8> {
    data.chunks(SECTOR as usize)
        .map(|s| match s {
            s if s.iter().all(|b| *b == 0xAA) => b'o',
            s if s.iter().all(|b| *b == 0xBB) => b'n',
            _ => b'g',
        })
        .collect()
}

#[test]
fn a_torn_write_mixes_old_and_new_sectors_as_its_fate_says() {
    let (base, events) = four_sector_overwrite();
    let mut mixed = 0;
    for seed in 0..SEEDS_MAX {
        let choices = FaultChoices::Seeded(seed);
        let image =
            build_image(&base, &events, 1, FaultProfile::PowerLoss, SECTOR, &choices).unwrap();
        let kinds = sector_kinds(&image.files["f"]);
        assert!(!kinds.contains(&b'g'), "power-loss writes no garbage");
        if let ChangeFate::Torn(sectors) = &image.fates.changes[0].fate {
            let expected: Vec<u8> = sectors
                .iter()
                .map(|s| if *s == SectorFate::Kept { b'n' } else { b'o' })
                .collect();
            assert_eq!(kinds, expected, "seed {seed}: sectors follow the fate log");
            mixed += usize::from(kinds.contains(&b'n') && kinds.contains(&b'o'));
        }
    }
    assert!(
        mixed > 0,
        "some seed tears the write into old and new sectors"
    );
}

#[test]
fn torn_garbage_can_leave_sectors_neither_old_nor_new() {
    let (base, events) = four_sector_overwrite();
    let images = images_over_seeds(&base, &events, FaultProfile::TornGarbage);
    assert!(images.iter().any(|i| sector_kinds(&i["f"]).contains(&b'g')));
}

#[test]
fn a_torn_extension_reads_as_zeros_where_its_sectors_were_lost() {
    let (storage, sink) = recorder(&files(&[("f", b"")]), FaultPlan::default());
    storage
        .open("f")
        .unwrap()
        .write_at(0, &[7; 2 * SECTOR as usize])
        .unwrap();
    let fates = ExplicitFates {
        changes: [(
            0,
            ChangeFate::Torn(vec![SectorFate::Lost, SectorFate::Kept]),
        )]
        .into(),
        media: None,
    };
    let base = files(&[("f", b"")]);
    let image = build_image(
        &base,
        &sink.events(),
        1,
        FaultProfile::PowerLoss,
        SECTOR,
        &FaultChoices::Explicit(fates),
    )
    .unwrap();
    let f = &image.files["f"];
    assert_eq!(f.len(), 2 * SECTOR as usize);
    assert!(f[..SECTOR as usize].iter().all(|b| *b == 0));
    assert!(f[SECTOR as usize..].iter().all(|b| *b == 7));
}

#[test]
fn power_loss_ordered_keeps_only_prefixes() {
    let writes = 8u64;
    let base = files(&[("f", &vec![0u8; (writes * SECTOR) as usize])]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    let f = storage.open("f").unwrap();
    for i in 0..writes {
        f.write_at(i * SECTOR, &[i as u8 + 1; SECTOR as usize])
            .unwrap();
    }
    let mut lengths = std::collections::BTreeSet::new();
    for image in images_over_seeds(&base, &sink.events(), FaultProfile::PowerLossOrdered) {
        let present: Vec<bool> = image["f"]
            .chunks(SECTOR as usize)
            .map(|s| s[0] != 0)
            .collect();
        let prefix = present.iter().take_while(|p| **p).count();
        assert!(
            present[prefix..].iter().all(|p| !p),
            "not a prefix: {present:?}"
        );
        lengths.insert(prefix);
    }
    assert!(lengths.len() > 4, "many prefix lengths occur: {lengths:?}");
}

#[test]
fn a_failed_fsync_drops_its_writes_even_after_a_later_successful_sync() {
    let base = files(&[("f", b"")]);
    let (storage, sink) = recorder(
        &base,
        FaultPlan {
            fail_sync: Some(0),
            stop_at: None,
        },
    );
    let f = storage.open("f").unwrap();
    f.write_at(0, b"lost").unwrap();
    f.sync_data().expect_err("the first sync fails");
    f.write_at(SECTOR, b"kept").unwrap();
    f.sync_data().expect("the second sync succeeds");
    let events = sink.events();
    for seed in 0..SEEDS_MAX {
        let image = image(&base, &events, FaultProfile::FsyncError, seed);
        assert_eq!(
            &image["f"][..4],
            &[0; 4],
            "seed {seed}: the failed sync's write is gone"
        );
        assert_eq!(&image["f"][SECTOR as usize..], b"kept");
    }
    let built = whole_image(
        &base,
        &events,
        FaultProfile::FsyncError,
        &FaultChoices::Seeded(0),
    );
    assert_eq!(built.fates.lost_to_failed_sync.len(), 1);
    assert_eq!(built.fates.lost_to_failed_sync[0].event_index, 0);
    let crash = image(&base, &events, FaultProfile::ProcessCrash, 0);
    assert_eq!(
        &crash["f"][..4],
        b"lost",
        "the page cache still has it after a kill"
    );
}

#[test]
fn media_changes_exactly_one_durable_spot() {
    let durable: Vec<u8> = (0..3 * SECTOR).map(|i| (i / SECTOR) as u8 + 0x50).collect();
    let (base, events, _) = synced_then_unsynced(&durable, &[1; 100]);
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..SEEDS_MAX {
        let built = whole_image(
            &base,
            &events,
            FaultProfile::Media,
            &FaultChoices::Seeded(seed),
        );
        let mut clean = built.fates.to_explicit();
        let fault = clean
            .media
            .take()
            .expect("a durable file exists, so a media fault");
        let reference = whole_image(
            &base,
            &events,
            FaultProfile::Media,
            &FaultChoices::Explicit(clean),
        );
        let (a, b) = (&built.files["f"], &reference.files["f"]);
        assert_eq!(a.len(), b.len());
        let differing: Vec<usize> = (0..a.len()).filter(|i| a[*i] != b[*i]).collect();
        let durable_len = 3 * SECTOR as usize;
        match fault {
            MediaFault::BitFlip { offset, .. } => {
                assert_eq!(differing, vec![offset as usize]);
                assert_eq!((a[offset as usize] ^ b[offset as usize]).count_ones(), 1);
                kinds.insert("bit");
            }
            MediaFault::Misdirected { target_sector, .. } => {
                assert!(!differing.is_empty());
                assert!(
                    differing
                        .iter()
                        .all(|i| *i as u64 / SECTOR == target_sector)
                );
                kinds.insert("misdirected");
            }
        }
        assert!(
            differing.iter().all(|i| *i < durable_len),
            "only durable bytes change"
        );
    }
    assert_eq!(kinds.len(), 2, "bit flips and misdirected writes occur");
}

#[test]
fn process_crash_equals_the_live_state() {
    let (base, events, live) = synced_then_unsynced(b"synced", b"volatile");
    assert_eq!(image(&base, &events, FaultProfile::ProcessCrash, 7), live);
}

// --- determinism and explicit choices ---

fn churn_trace(ops: usize) -> (Files, Vec<Event>) {
    let base = files(&[("wal", &[3; 700]), ("data", &[4; 2000])]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    let wal = storage.open("wal").unwrap();
    let data = storage.open("data").unwrap();
    for i in 0..ops as u64 {
        let offset = (i * 331) % 5000;
        match i % 7 {
            0..=2 => wal.write_at(700 + i * 40, &[i as u8; 40]).unwrap(),
            3 => data.write_at(offset, &[i as u8; 1000]).unwrap(),
            4 => wal.sync_data().unwrap(),
            5 if i % 3 == 0 => {
                let name = format!("seg{i}");
                storage.create(&name).unwrap().write_at(0, b"seg").unwrap();
                storage.rename(&name, &format!("{name}.done")).unwrap();
            }
            5 => data.sync_all().unwrap(),
            _ => storage.sync_dir().unwrap(),
        }
    }
    (base, sink.events())
}

#[test]
fn the_same_inputs_give_byte_identical_images_and_fate_logs() {
    let (base, events) = churn_trace(200);
    for profile in FaultProfile::ALL {
        for k in [0, 17, 100, events.len()] {
            let choices = FaultChoices::Seeded(k as u64 * 31 + 5);
            let one = build_image(&base, &events, k, profile, SECTOR, &choices).unwrap();
            let two = build_image(&base, &events, k, profile, SECTOR, &choices).unwrap();
            assert_eq!(one, two, "{profile} at {k}");
        }
    }
}

#[test]
fn explicit_fates_from_a_seeded_image_rebuild_it() {
    let (base, events) = churn_trace(300);
    for profile in LOSSY {
        let mut builder = ImageBuilder::new(&base, &events, SECTOR);
        for k in (0..=events.len()).step_by(13) {
            let seeded = builder
                .image_at(k, profile, &FaultChoices::Seeded(k as u64))
                .unwrap();
            let explicit = FaultChoices::Explicit(seeded.fates.to_explicit());
            let rebuilt = build_image(&base, &events, k, profile, SECTOR, &explicit).unwrap();
            assert_eq!(seeded.files, rebuilt.files, "{profile} at {k}");
            assert_eq!(seeded.fates, rebuilt.fates, "{profile} at {k}");
        }
    }
}

#[test]
fn the_incremental_builder_matches_a_fresh_build_at_every_point() {
    let (base, events) = churn_trace(150);
    let mut builder = ImageBuilder::new(&base, &events, SECTOR);
    for k in 0..=events.len() {
        let choices = FaultChoices::Seeded(k as u64 ^ 0xABCD);
        let incremental = builder
            .image_at(k, FaultProfile::TornGarbage, &choices)
            .unwrap();
        let fresh = build_image(
            &base,
            &events,
            k,
            FaultProfile::TornGarbage,
            SECTOR,
            &choices,
        )
        .unwrap();
        assert_eq!(incremental, fresh, "at {k}");
    }
    let behind = builder.image_at(3, FaultProfile::PowerLoss, &FaultChoices::Seeded(0));
    assert!(matches!(behind, Err(ImageError::CrashPointBehind { .. })));
}

#[test]
fn bad_explicit_fates_are_errors_not_panics() {
    let (base, events) = four_sector_overwrite();
    let not_pending = ExplicitFates {
        changes: [(5, ChangeFate::Persisted)].into(),
        media: None,
    };
    let result = build_image(
        &base,
        &events,
        1,
        FaultProfile::PowerLoss,
        SECTOR,
        &FaultChoices::Explicit(not_pending),
    );
    assert_eq!(
        result.unwrap_err(),
        ImageError::NotPending { event_index: 5 }
    );
    let short = ExplicitFates {
        changes: [(0, ChangeFate::Torn(vec![SectorFate::Kept]))].into(),
        media: None,
    };
    let result = build_image(
        &base,
        &events,
        1,
        FaultProfile::PowerLoss,
        SECTOR,
        &FaultChoices::Explicit(short),
    );
    assert!(matches!(
        result,
        Err(ImageError::TornMismatch {
            expected: 4,
            got: 1,
            ..
        })
    ));
    let media = MediaFault::BitFlip {
        file: "nope".into(),
        offset: 0,
        bit: 0,
    };
    let wrong = ExplicitFates {
        changes: BTreeMap::new(),
        media: Some(media),
    };
    let result = build_image(
        &base,
        &events,
        1,
        FaultProfile::Media,
        SECTOR,
        &FaultChoices::Explicit(wrong),
    );
    assert!(matches!(result, Err(ImageError::MediaOutOfRange { .. })));
}

// --- crash points ---

#[test]
fn crash_points_are_deterministic_in_range_and_cover_the_places() {
    let (_, mut events) = churn_trace(300);
    events.insert(100, Event::CheckpointIssued);
    events.insert(120, Event::CheckpointAcked);
    events.insert(200, Event::OpenIssued);
    events.insert(230, Event::Opened);
    events.insert(250, Event::Acked { txn: 1, now_us: 5 });
    let one = choose_crash_points(&events, &mut ChaCha8Rng::seed_from_u64(9), 200);
    let two = choose_crash_points(&events, &mut ChaCha8Rng::seed_from_u64(9), 200);
    assert_eq!(one, two);
    assert!(one.len() > 100 && one.len() <= 200);
    assert!(one.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    assert!(one.iter().all(|k| *k <= events.len()));
    assert!(
        one.iter().any(|k| (101..=120).contains(k)),
        "inside the checkpoint"
    );
    assert!(
        one.iter().any(|k| (201..=230).contains(k)),
        "during recovery"
    );
    assert!(one.contains(&251), "right after the ack");
    let syncs: Vec<usize> = candidates(&events, CrashPlace::AroundSync)
        .iter()
        .map(|r| r.start)
        .collect();
    let near_sync = one.iter().filter(|k| syncs.contains(k)).count();
    assert!(
        near_sync * 2 > one.len(),
        "biased toward syncs: {near_sync} of {}",
        one.len()
    );
}

// --- exhaustive ---

#[test]
fn exhaustive_counts_two_to_the_k_subsets_per_crash_point() {
    let base = files(&[("f", b"")]);
    let (storage, sink) = recorder(&base, FaultPlan::default());
    let f = storage.open("f").unwrap();
    f.sync_data().unwrap();
    for i in 0..6u64 {
        f.write_at(i * SECTOR, &[i as u8 + 1; 8]).unwrap();
    }
    f.sync_data().unwrap();
    let events = sink.events();
    let windows = sync_windows(&events);
    assert_eq!(windows, vec![0..=0, 1..=7, 8..=8]);
    for k_max in [0, 3, 6, 12] {
        let window = windows[1].clone();
        let mut run = Exhaustive::new(&base, &events, window.clone(), k_max, SECTOR).unwrap();
        let mut per_point = BTreeMap::<usize, u64>::new();
        let mut images = std::collections::BTreeSet::new();
        while let Some(state) = run.next_state().unwrap() {
            *per_point.entry(state.crash_point).or_default() += 1;
            images.insert((state.crash_point, run.image(&state).unwrap().files));
        }
        for (point, count) in &per_point {
            let pending = point - 1; // the writes issued since the sync at 0
            assert_eq!(
                *count,
                1 << pending.min(k_max),
                "K = {k_max}, point {point}"
            );
        }
        let total = Exhaustive::states_total(&base, &events, window, k_max, SECTOR).unwrap();
        assert_eq!(run.states_yielded(), total);
        assert_eq!(
            images.len() as u64,
            total,
            "every subset gives a distinct image"
        );
    }
}

// --- shared trace ---

fn every_kind_of_event() -> Vec<Event> {
    vec![
        Event::Create {
            name: "wal-1".into(),
            file: 3,
        },
        Event::Write {
            file: 3,
            offset: 1 << 40,
            data: vec![1, 2, 3],
        },
        Event::SetLen { file: 3, len: 9 },
        Event::SyncData {
            file: 3,
            failed: true,
        },
        Event::SyncAll {
            file: 2,
            failed: false,
        },
        Event::Rename {
            from: "a".into(),
            to: "b".into(),
            file: 1,
        },
        Event::Remove {
            name: "b".into(),
            file: 1,
        },
        Event::Link {
            from: "wal-1".into(),
            to: "d/wal-1".into(),
            file: 3,
        },
        Event::SyncDir {
            dir: String::new(),
            failed: false,
        },
        Event::CreateDir {
            path: "appendonlydir".into(),
        },
        Event::SyncDir {
            dir: "appendonlydir".into(),
            failed: true,
        },
        Event::RemoveDir {
            path: "appendonlydir".into(),
        },
        Event::CommitIssued {
            txn: 7,
            writes: vec![(b"k".to_vec(), Some(b"v".to_vec())), (b"d".to_vec(), None)],
        },
        Event::CommitLogged {
            txn: 7,
            lsn: Some(42),
        },
        Event::CommitLogged { txn: 8, lsn: None },
        Event::Acked { txn: 7, now_us: 99 },
        Event::CommitFailed { txn: 8 },
        Event::CheckpointIssued,
        Event::CheckpointAcked,
        Event::OpenIssued,
        Event::Opened,
    ]
}

#[test]
fn the_encoding_round_trips_every_event_and_rejects_truncation() {
    let events = every_kind_of_event();
    let mut bytes = Vec::new();
    let mut entry = Vec::new();
    for event in &events {
        encode_entry(event, &mut entry);
        bytes.extend_from_slice(&entry);
    }
    assert_eq!(decode_entries(&bytes).unwrap(), events);
    assert!(decode_entries(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn timed_entries_round_trip_and_a_trace_is_timed_all_through_in_order() {
    let events = every_kind_of_event();
    let encode = |times: &[Option<u64>]| {
        let mut bytes = Vec::new();
        let mut entry = Vec::new();
        for (event, time) in events.iter().zip(times) {
            encode_entry_at(event, *time, &mut entry);
            bytes.extend_from_slice(&entry);
        }
        bytes
    };
    let times: Vec<u64> = (0..events.len() as u64).map(|i| 1000 + i * 7).collect();
    let timed = encode(&times.iter().copied().map(Some).collect::<Vec<_>>());
    assert_eq!(
        decode_timed_entries(&timed).unwrap(),
        (events.clone(), times.clone())
    );
    // The untimed view of a timed trace is its events.
    assert_eq!(decode_entries(&timed).unwrap(), events);
    assert!(decode_timed_entries(&timed[..timed.len() - 1]).is_err());
    let untimed = encode(&vec![None; events.len()]);
    assert_eq!(
        decode_timed_entries(&untimed).unwrap(),
        (events.clone(), Vec::new())
    );
    let mut mixed: Vec<Option<u64>> = times.iter().copied().map(Some).collect();
    mixed[3] = None;
    assert!(matches!(
        decode_timed_entries(&encode(&mixed)),
        Err(TraceDecodeError::MixedTimes { .. })
    ));
    let mut back: Vec<Option<u64>> = times.iter().copied().map(Some).collect();
    back[5] = Some(1);
    assert!(matches!(
        decode_timed_entries(&encode(&back)),
        Err(TraceDecodeError::TimeWentBack { time_us: 1, .. })
    ));
}

#[test]
fn a_shared_trace_with_a_clock_stamps_every_entry_in_order() {
    let trace = SharedTrace::new(1 << 16).unwrap();
    let clock = Arc::new(engine::VirtualClock::new(500));
    assert!(trace.stamp_with(clock.clone()));
    assert!(!trace.stamp_with(clock.clone()), "one clock per trace");
    let events = every_kind_of_event();
    for event in &events {
        trace.record(event.clone());
        clock.advance_us(3);
    }
    let (read, times) = trace.try_timed_events().unwrap();
    assert_eq!(read, events);
    let expected: Vec<u64> = (0..events.len() as u64).map(|i| 500 + 3 * i).collect();
    assert_eq!(times, expected);
}

#[test]
fn the_shared_trace_records_reads_back_and_overflows_without_corruption() {
    let trace = SharedTrace::new(4096).unwrap();
    let events = every_kind_of_event();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(trace.record(event.clone()), i as u64);
    }
    assert_eq!(trace.events(), events);
    let big = Event::Write {
        file: 0,
        offset: 0,
        data: vec![9; 100],
    };
    let mut recorded = events.len();
    while trace.record(big.clone()) != NOT_RECORDED {
        recorded += 1;
    }
    assert!(trace.overflowed());
    assert_eq!(
        trace.record(Event::Opened),
        NOT_RECORDED,
        "overflow is sticky"
    );
    let read = trace.events();
    assert_eq!(read.len(), recorded);
    assert_eq!(&read[..events.len()], &events[..]);
    trace.reset();
    assert!(!trace.overflowed() && trace.events().is_empty());
}

#[test]
fn a_recording_storage_over_a_full_trace_fails_instead_of_losing_events() {
    let trace = Arc::new(SharedTrace::new(4096).unwrap());
    let storage =
        RecordingStorage::new(MemStorage::new(), trace.clone(), FaultPlan::default(), None);
    let f = storage.create("f").unwrap();
    let mut failed_at = None;
    for i in 0..100u64 {
        if f.write_at(i * 100, &[1; 100]).is_err() {
            failed_at = Some(i);
            break;
        }
    }
    assert!(failed_at.is_some(), "the trace fills up");
    assert!(f.sync_data().is_err(), "and the storage stays failed");
    let events = trace.events();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::Create { .. } | Event::Write { .. }))
    );
    assert_eq!(
        events.len() as u64,
        failed_at.unwrap() + 1,
        "a consistent prefix"
    );
}

// --- properties over random traces ---

mod properties {
    use super::*;
    use proptest::prelude::*;

    const FILES_MAX: usize = 4;

    #[derive(Clone, Debug)]
    enum Op {
        Create,
        Write {
            file: usize,
            offset: u16,
            len: u16,
            byte: u8,
        },
        SetLen {
            file: usize,
            len: u16,
        },
        SyncData {
            file: usize,
        },
        SyncDir,
        Rename {
            file: usize,
            to: usize,
        },
        Link {
            file: usize,
            to: usize,
        },
        Remove {
            file: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let file = 0..FILES_MAX;
        prop_oneof![
            1 => Just(Op::Create),
            6 => (file.clone(), 0..3000u16, 1..1500u16, any::<u8>())
                .prop_map(|(file, offset, len, byte)| Op::Write { file, offset, len, byte }),
            1 => (file.clone(), 0..4000u16).prop_map(|(file, len)| Op::SetLen { file, len }),
            2 => file.clone().prop_map(|file| Op::SyncData { file }),
            1 => Just(Op::SyncDir),
            1 => (file.clone(), 0..FILES_MAX).prop_map(|(file, to)| Op::Rename { file, to }),
            1 => (file.clone(), 0..FILES_MAX).prop_map(|(file, to)| Op::Link { file, to }),
            1 => file.prop_map(|file| Op::Remove { file }),
        ]
    }

    /// An independent reference: the durable state is, per file, its live
    /// bytes at its last sync, and the directory as it was at the last
    /// `sync_dir` (no failed syncs here).
    struct Reference {
        storage: RecordingStorage,
        handles: Vec<Box<dyn StorageFile>>,
        /// Per created handle: its current names (several after links).
        names: Vec<Vec<String>>,
        durable_bytes: Vec<Vec<u8>>,
        durable_dir: BTreeMap<String, usize>,
    }

    impl Reference {
        fn apply(&mut self, op: &Op) {
            let count = self.handles.len();
            match *op {
                Op::Create => {
                    let name = format!("f{count}");
                    self.handles.push(self.storage.create(&name).unwrap());
                    self.names.push(vec![name]);
                    self.durable_bytes.push(Vec::new());
                }
                _ if count == 0 => {}
                Op::Write {
                    file,
                    offset,
                    len,
                    byte,
                } => {
                    self.handles[file % count]
                        .write_at(offset.into(), &vec![byte; len.into()])
                        .unwrap();
                }
                Op::SetLen { file, len } => self.handles[file % count].set_len(len.into()).unwrap(),
                Op::SyncData { file } => {
                    let file = file % count;
                    self.handles[file].sync_data().unwrap();
                    let len = self.handles[file].len().unwrap() as usize;
                    let mut bytes = vec![0; len];
                    self.handles[file].read_at(0, &mut bytes).unwrap();
                    self.durable_bytes[file] = bytes;
                }
                Op::SyncDir => {
                    self.storage.sync_dir().unwrap();
                    self.durable_dir = self
                        .names
                        .iter()
                        .enumerate()
                        .flat_map(|(id, names)| names.iter().map(move |name| (name.clone(), id)))
                        .collect();
                }
                Op::Rename { file, to } => {
                    let (file, to) = (file % count, to % count);
                    let Some(from) = self.names[file].first().cloned() else {
                        return;
                    };
                    let target = format!("r{to}");
                    self.storage.rename(&from, &target).unwrap();
                    if self.names[file].contains(&target) {
                        return; // two names of one file: nothing changes
                    }
                    for names in self.names.iter_mut() {
                        names.retain(|name| *name != target);
                    }
                    self.names[file].retain(|name| *name != from);
                    self.names[file].push(target);
                }
                Op::Link { file, to } => {
                    let (file, to) = (file % count, to % count);
                    let Some(from) = self.names[file].first().cloned() else {
                        return;
                    };
                    let target = format!("l{to}");
                    if self.names.iter().any(|names| names.contains(&target)) {
                        return;
                    }
                    self.storage.link(&from, &target).unwrap();
                    self.names[file].push(target);
                }
                Op::Remove { file } => {
                    let file = file % count;
                    if !self.names[file].is_empty() {
                        let name = self.names[file].remove(0);
                        self.storage.remove(&name).unwrap();
                    }
                }
            }
        }

        fn durable_files(&self) -> Files {
            self.durable_dir
                .iter()
                .map(|(name, id)| (name.clone(), self.durable_bytes[*id].clone()))
                .collect()
        }
    }

    fn run(ops: &[Op]) -> (Vec<Event>, Files, Files) {
        let (storage, sink) = recorder(&Files::new(), FaultPlan::default());
        let mut reference = Reference {
            storage,
            handles: Vec::new(),
            names: Vec::new(),
            durable_bytes: Vec::new(),
            durable_dir: BTreeMap::new(),
        };
        for op in ops {
            reference.apply(op);
        }
        let live = reference.storage.live().snapshot();
        (sink.events(), live, reference.durable_files())
    }

    fn all(events: &[Event], fate: ChangeFate) -> FaultChoices {
        let mut builder = ImageBuilder::new(&Files::new(), events, SECTOR);
        builder.advance_to(events.len()).unwrap();
        let changes = builder
            .pending_event_indexes()
            .into_iter()
            .map(|i| (i, fate.clone()))
            .collect();
        FaultChoices::Explicit(ExplicitFates {
            changes,
            media: None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn all_persisted_untorn_is_the_live_state(ops in proptest::collection::vec(op(), 0..60)) {
            let (events, live, _) = run(&ops);
            let choices = all(&events, ChangeFate::Persisted);
            let image = whole_image(&Files::new(), &events, FaultProfile::PowerLoss, &choices);
            prop_assert_eq!(image.files, live);
        }

        #[test]
        fn all_dropped_is_the_last_synced_state(ops in proptest::collection::vec(op(), 0..60)) {
            let (events, _, durable) = run(&ops);
            let image = build_image(&Files::new(), &events, events.len(), FaultProfile::PowerLoss, SECTOR, &FaultChoices::Explicit(ExplicitFates::default())).unwrap();
            prop_assert_eq!(image.files, durable);
        }

        #[test]
        fn seeded_images_replay_from_their_fates(ops in proptest::collection::vec(op(), 0..60), seed in any::<u64>()) {
            let (events, _, _) = run(&ops);
            for profile in LOSSY {
                let seeded = whole_image(&Files::new(), &events, profile, &FaultChoices::Seeded(seed));
                let explicit = FaultChoices::Explicit(seeded.fates.to_explicit());
                let rebuilt = whole_image(&Files::new(), &events, profile, &explicit);
                prop_assert_eq!(&seeded.files, &rebuilt.files);
            }
        }
    }
}
