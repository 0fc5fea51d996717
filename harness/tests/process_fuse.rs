//! The FUSE front-end of process targets: every change a program makes on
//! the mount reaches the recording storage, in order, one storage call per
//! system call, so its trace is exactly what an in-process target's would
//! be. Needs root and /dev/fuse (the machine's set-up; `.ci/run` runs as
//! root): the test fails rather than skips without them.

use engine::storage::MemStorage;
use harness::fault::FaultProfile;
use harness::fault::image::{ChangeFate, ExplicitFates, FaultChoices, build_image};
use harness::fault::recording::{FaultPlan, RecordingStorage};
use harness::fault::trace::{Event, VecSink};
use harness::target::process::fuse::Mount;
use harness::target::process::namespace::{check_fuse_available, is_mounted};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

fn renameat2(from: &std::path::Path, to: &std::path::Path, flags: u32) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes()).unwrap();
    let to = CString::new(to.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings; AT_FDCWD.
    let status = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn every_change_on_the_mount_reaches_the_trace_in_order() {
    check_fuse_available().expect("this test needs FUSE and root");
    let base = BTreeMap::from([("old".to_string(), b"base".to_vec())]);
    let sink = Arc::new(VecSink::new());
    let storage = RecordingStorage::new(
        MemStorage::from_files(base),
        sink.clone(),
        FaultPlan::default(),
        None,
    );
    let mountpoint = tempfile::tempdir().unwrap();
    let dir = mountpoint.path();
    let mount = Mount::new(Arc::new(storage.clone()), dir).unwrap();
    assert!(is_mounted(dir).unwrap());

    fs::create_dir(dir.join("aof")).unwrap();
    let mut log = File::create(dir.join("aof/log.tmp")).unwrap();
    log.write_all(b"SET k v\n").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"DEL k\n").unwrap();
    log.sync_all().unwrap();
    drop(log);
    renameat2(
        &dir.join("aof/log.tmp"),
        &dir.join("old"),
        libc::RENAME_NOREPLACE,
    )
    .expect_err("RENAME_NOREPLACE refuses an existing target");
    fs::rename(dir.join("aof/log.tmp"), dir.join("aof/log")).unwrap();
    File::open(dir.join("aof")).unwrap().sync_all().unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("old"))
        .unwrap();
    file.set_len(2).unwrap();
    file.write_all_at(b"XY", 6).unwrap();
    // SAFETY: a valid open descriptor.
    assert_eq!(
        unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, 100) },
        0
    );
    drop(file);
    fs::remove_file(dir.join("old")).unwrap();
    fs::create_dir(dir.join("gone")).unwrap();
    fs::remove_dir(dir.join("gone")).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();

    let mut text = String::new();
    File::open(dir.join("aof/log"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "SET k v\nDEL k\n");
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["aof"]);
    assert_eq!(mount.control().late_changes(), 0);
    mount.unmount().unwrap();
    assert!(!is_mounted(dir).unwrap());

    let expected = vec![
        Event::CreateDir { path: "aof".into() },
        Event::Create {
            name: "aof/log.tmp".into(),
            file: 1,
        },
        Event::Write {
            file: 1,
            offset: 0,
            data: b"SET k v\n".to_vec(),
        },
        Event::SyncData {
            file: 1,
            failed: false,
        },
        Event::Write {
            file: 1,
            offset: 8,
            data: b"DEL k\n".to_vec(),
        },
        Event::SyncAll {
            file: 1,
            failed: false,
        },
        Event::Rename {
            from: "aof/log.tmp".into(),
            to: "aof/log".into(),
            file: 1,
        },
        Event::SyncDir {
            dir: "aof".into(),
            failed: false,
        },
        Event::SetLen { file: 0, len: 2 },
        Event::Write {
            file: 0,
            offset: 6,
            data: b"XY".to_vec(),
        },
        Event::SetLen { file: 0, len: 100 },
        Event::Remove {
            name: "old".into(),
            file: 0,
        },
        Event::CreateDir {
            path: "gone".into(),
        },
        Event::RemoveDir {
            path: "gone".into(),
        },
        Event::SyncDir {
            dir: String::new(),
            failed: false,
        },
    ];
    assert_eq!(sink.events(), expected);
}

/// `ln` on the mount: the link reaches the trace in order, the new name
/// shares the file (same inode, link count 2, a write through one name is
/// read through the other, `rm` of one keeps the data under the other),
/// and a crash image keeps the new name only if it persisted: dropped
/// before the sync of its directory, it is gone; synced, it stays.
#[test]
fn a_hard_link_made_by_ln_reaches_the_trace_and_survives_power_loss_as_modelled() {
    check_fuse_available().expect("this test needs FUSE and root");
    let sink = Arc::new(VecSink::new());
    let storage =
        RecordingStorage::new(MemStorage::new(), sink.clone(), FaultPlan::default(), None);
    let mountpoint = tempfile::tempdir().unwrap();
    let dir = mountpoint.path();
    let mount = Mount::new(Arc::new(storage.clone()), dir).unwrap();

    fs::create_dir(dir.join("d")).unwrap();
    let mut file = File::create(dir.join("d/f")).unwrap();
    file.write_all(b"first").unwrap();
    file.sync_all().unwrap();
    File::open(dir.join("d")).unwrap().sync_all().unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
    let ln = std::process::Command::new("ln")
        .arg(dir.join("d/f"))
        .arg(dir.join("g"))
        .status()
        .unwrap();
    assert!(ln.success(), "ln on the mount");
    let linked_at = sink.events().len();
    let (f, g) = (
        fs::metadata(dir.join("d/f")).unwrap(),
        fs::metadata(dir.join("g")).unwrap(),
    );
    assert_eq!((f.ino(), f.nlink(), g.nlink()), (g.ino(), 2, 2));
    let other = OpenOptions::new().write(true).open(dir.join("g")).unwrap();
    other.write_all_at(b"F", 0).unwrap();
    let mut text = String::new();
    File::open(dir.join("d/f"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "First", "a write through g is read through d/f");
    let synced_at = sink.events().len();
    File::open(dir).unwrap().sync_all().unwrap();
    fs::remove_file(dir.join("d/f")).unwrap();
    assert_eq!(fs::metadata(dir.join("g")).unwrap().nlink(), 1);
    text.clear();
    File::open(dir.join("g"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(
        text, "First",
        "rm of one name keeps the data under the other"
    );
    drop((file, other));
    mount.unmount().unwrap();

    let events = sink.events();
    let link = Event::Link {
        from: "d/f".into(),
        to: "g".into(),
        file: 0,
    };
    assert_eq!(
        events[linked_at - 1],
        link,
        "the link, in the order delivered"
    );
    assert_eq!(
        events[synced_at..],
        [
            Event::SyncDir {
                dir: String::new(),
                failed: false,
            },
            Event::Remove {
                name: "d/f".into(),
                file: 0,
            },
        ]
    );

    // A power cut right after `ln`: the link is the only volatile change.
    let image_at = |point: usize, link_fate: Option<ChangeFate>| {
        let changes = link_fate
            .map(|fate| BTreeMap::from([(linked_at - 1, fate)]))
            .unwrap_or_default();
        let choices = FaultChoices::Explicit(ExplicitFates {
            changes,
            media: None,
        });
        build_image(
            &BTreeMap::new(),
            &events,
            point,
            FaultProfile::PowerLoss,
            512,
            &choices,
        )
        .unwrap()
        .files
    };
    let first = || b"first".to_vec();
    assert_eq!(
        image_at(linked_at, None),
        BTreeMap::from([("d/f".to_string(), first())]),
        "dropped: the new name is gone"
    );
    assert_eq!(
        image_at(linked_at, Some(ChangeFate::Persisted)),
        BTreeMap::from([("d/f".to_string(), first()), ("g".to_string(), first())]),
        "persisted: the new name reaches the same bytes"
    );
    // After the sync of the root, every image has g; the unsynced remove
    // of d/f may or may not persist, and g keeps the (unsynced) "F" write
    // only if it persisted: the file's bytes, whatever its name.
    for seed in 0..64 {
        let image = build_image(
            &BTreeMap::new(),
            &events,
            events.len(),
            FaultProfile::PowerLoss,
            512,
            &FaultChoices::Seeded(seed),
        )
        .unwrap()
        .files;
        let g = image.get("g").expect("a synced link stays");
        assert!(g == b"first" || g == b"First", "{g:?}");
        if let Some(f) = image.get("d/f") {
            assert_eq!(f, g, "one file, one set of bytes");
        }
    }
}
