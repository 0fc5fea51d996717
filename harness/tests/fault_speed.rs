//! Speed of the crash-image builder on a WAL-like trace of ~5,000 events.
//! Run: `cargo test -p harness --release --test fault_speed -- --ignored --nocapture`.

use engine::storage::{MemStorage, Storage};
use harness::fault::FaultProfile;
use harness::fault::image::{FaultChoices, ImageBuilder, SECTOR_SIZE_DEFAULT};
use harness::fault::points::choose_crash_points;
use harness::fault::recording::{FaultPlan, RecordingStorage};
use harness::fault::trace::{Event, EventSink, VecSink};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const EVENTS_TARGET: usize = 5000;
const PAGE_BYTES: usize = 4096;

/// A WAL engine's pattern: appends, a sync every few commits, page writes,
/// and a checkpoint (control file replaced atomically) now and then.
fn wal_trace() -> (BTreeMap<String, Vec<u8>>, Vec<Event>) {
    let base: BTreeMap<String, Vec<u8>> = [
        ("control".to_string(), vec![1; 64]),
        ("pages".to_string(), vec![2; 64 * PAGE_BYTES]),
        ("wal-0".to_string(), Vec::new()),
    ]
    .into();
    let sink = Arc::new(VecSink::new());
    let storage = RecordingStorage::new(
        MemStorage::from_files(base.clone()),
        sink.clone(),
        FaultPlan::default(),
        None,
    );
    let wal = storage.open("wal-0").unwrap();
    let pages = storage.open("pages").unwrap();
    let mut wal_end = 0u64;
    let mut i = 0u64;
    while sink.events().len() < EVENTS_TARGET {
        let record = vec![i as u8; 80 + (i as usize * 37) % 300];
        wal.write_at(wal_end, &record).unwrap();
        wal_end += record.len() as u64;
        sink.record(Event::CommitLogged {
            txn: i,
            lsn: Some(wal_end),
        });
        if i % 4 == 3 {
            wal.sync_data().unwrap();
            sink.record(Event::Acked { txn: i, now_us: i });
        }
        if i.is_multiple_of(9) {
            pages
                .write_at((i % 64) * PAGE_BYTES as u64, &[i as u8; PAGE_BYTES])
                .unwrap();
        }
        if i % 200 == 199 {
            sink.record(Event::CheckpointIssued);
            pages.sync_data().unwrap();
            let tmp = storage.create("control.tmp").unwrap();
            tmp.write_at(0, &[i as u8; 64]).unwrap();
            tmp.sync_all().unwrap();
            storage.rename("control.tmp", "control").unwrap();
            storage.sync_dir().unwrap();
            sink.record(Event::CheckpointAcked);
        }
        i += 1;
    }
    (base, sink.events())
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn images_per_second_on_a_5000_event_trace() {
    let (base, events) = wal_trace();
    let wal_bytes: usize = events
        .iter()
        .map(|e| {
            if let Event::Write { data, .. } = e {
                data.len()
            } else {
                0
            }
        })
        .sum();
    println!(
        "trace: {} events, {} bytes written",
        events.len(),
        wal_bytes
    );
    let points = choose_crash_points(&events, &mut ChaCha8Rng::seed_from_u64(1), 2000);
    for profile in FaultProfile::ALL {
        let started = Instant::now();
        let mut builder = ImageBuilder::new(&base, &events, SECTOR_SIZE_DEFAULT);
        let mut images = 0u64;
        let mut image_bytes = 0usize;
        for (n, point) in points.iter().enumerate() {
            let image = builder
                .image_at(*point, profile, &FaultChoices::Seeded(n as u64))
                .unwrap();
            assert!(!image.files.is_empty());
            image_bytes += image.files.values().map(Vec::len).sum::<usize>();
            images += 1;
            image_bytes += image.files.values().map(Vec::len).sum::<usize>();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{profile:>20}: {images} images at distinct points in {seconds:.3}s = {:.0} images/s, mean image {} KiB (one builder, one core)",
            images as f64 / seconds,
            image_bytes / images as usize / 1024
        );
    }
    let started = Instant::now();
    let fresh = 200;
    for (n, point) in points.iter().step_by(points.len() / fresh).enumerate() {
        let mut builder = ImageBuilder::new(&base, &events, SECTOR_SIZE_DEFAULT);
        builder
            .image_at(
                *point,
                FaultProfile::PowerLoss,
                &FaultChoices::Seeded(n as u64),
            )
            .unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("    from scratch: {:.0} images/s", fresh as f64 / seconds);
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn recording_storage_operations_per_second_into_the_shared_trace() {
    use harness::fault::shm::SharedTrace;
    let operations = 200_000u64;
    let trace = Arc::new(SharedTrace::new(256 << 20).unwrap());
    let storage =
        RecordingStorage::new(MemStorage::new(), trace.clone(), FaultPlan::default(), None);
    let wal = storage.create("wal").unwrap();
    let record = [7u8; 200];
    let started = Instant::now();
    for i in 0..operations {
        if i % 8 == 7 {
            wal.sync_data().unwrap();
        } else {
            wal.write_at(i * 200, &record).unwrap();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "recording: {operations} operations in {seconds:.3}s = {:.0} ops/s ({} trace bytes)",
        operations as f64 / seconds,
        trace.len_bytes()
    );
    let started = Instant::now();
    let events = trace.events();
    assert_eq!(events.len() as u64, operations + 1);
    println!(
        "reading the trace back: {:.3}s",
        started.elapsed().as_secs_f64()
    );
}
