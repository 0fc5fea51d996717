//! Crash images: what a disk could hold after the power is cut at a point of
//! the trace.
//!
//! Fault model (SPEC §3), as implemented here:
//! - The disk is a *durable* state (directory entries name → [`FileId`], and
//!   each file's durable bytes) plus a list of *pending* volatile changes in
//!   issue order. The *live* state (the page cache, what reads see) is kept
//!   apart, for `process-crash`. Pristine durable data is never touched by a
//!   crash choice: every image is an overlay computed on a copy.
//! - `Write`, `SetLen`, `Create`, `Rename`, `Link` and `Remove` are
//!   volatile until a sync covers them: a successful `SyncData`/`SyncAll` of
//!   a file promotes that file's pending writes and size changes (in order);
//!   a successful `SyncDir` promotes every pending create, rename, link and
//!   remove.
//! - A *failed* sync (`failed: true`, Linux ext4/xfs semantics) drops the
//!   pending changes it would have covered for good: they never become
//!   durable, even after a later successful sync. The live state keeps them.
//! - At a power cut (`power-loss`, `fsync-error`, `torn-garbage`, `media`)
//!   each pending change independently persists or is dropped; a persisted
//!   write may be torn at sector granularity (sectors aligned to absolute
//!   file offsets): each sector of it is kept, lost (old bytes, or zeros past
//!   the old end: the size extension persists without its data) or, only
//!   when chosen, garbage. `power-loss-ordered` keeps a prefix of the pending
//!   changes, the last one possibly torn. `process-crash` keeps the live
//!   state.
//! - Directory entries are path → FileId; a file may have several names
//!   (hard links), all reaching its one set of bytes. Persisted directory
//!   changes are applied in issue order: a create, rename or link gives the
//!   file the name, replacing whatever that name held; a rename also takes
//!   away every name of the file that it no longer had in the live state
//!   right after the rename (its source, and the names a dropped earlier
//!   rename would have taken: without links a file has at most one name);
//!   a remove deletes the name if it still names that file. A file no name
//!   reaches is gone. A link is an entry in the directory of its new name
//!   only: until a sync of that directory covers it, a power cut may drop
//!   it (the file keeps its other names) or keep it (the new name reaches
//!   the file's bytes as they are in the image, durable or not), whatever
//!   happens to the file's data. A rename between two names of one file
//!   changes nothing (`rename(2)`) and is no change.
//! - Subdirectories: `CreateDir` and `RemoveDir` are directory changes in
//!   the parent directory. A `SyncDir` of directory D promotes the pending
//!   creates, removes, directory creations and removals whose entry lives in
//!   D, and renames whose source or target lives in D. A file or directory
//!   whose ancestors do not all exist in an image is gone with them (a
//!   directory creation that did not persist takes its synced contents with
//!   it: no file system journal orders it before them here). A file's own
//!   name changes persist in order: a sync covering one also covers the
//!   file's earlier pending creates and renames, wherever they were.
//! - `media` adds one flipped bit or one misdirected sector (a sector of the
//!   file copied over another) inside bytes that were durable at the crash.
//!
//! Not modelled: a size extension persisting *without* the write that caused
//! it being chosen (only as a torn write keeping no sector), data persisting
//! without the size change that carried it, metadata-only differences
//! between `sync_data` and `sync_all`, and corruption of volatile data.

use super::FaultProfile;
use super::trace::{Event, FileId, NO_FILE};
use engine::storage::split_path;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

/// The sector size of SPEC §3 unless a scenario says otherwise.
pub const SECTOR_SIZE_DEFAULT: u64 = 512;
/// The largest file the simulated disk holds (it lives in memory).
pub const FILE_LEN_MAX: u64 = 1 << 32;
/// The most volatile changes pending at once (a bound on one image's work).
pub const PENDING_CHANGES_MAX: usize = 1 << 20;
/// How many sector pairs a seeded misdirected write tries before it falls
/// back to a bit flip (it needs two sectors that differ).
pub const MISDIRECT_ATTEMPTS_MAX: usize = 16;

/// Probability that a seeded power cut persists a given volatile change.
const PERSIST_PROBABILITY: f64 = 0.5;
/// Probability that a seeded persisted write (of at least two sectors, or
/// any under `torn-garbage`) is torn.
const TEAR_PROBABILITY: f64 = 0.25;

/// What happened to one sector of a torn write.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectorFate {
    /// The new bytes reached the disk.
    Kept,
    /// The old bytes stayed (zeros past the old end of the file).
    Lost,
    /// Neither old nor new: bytes drawn from this seed.
    Garbage(u64),
}

/// What happened to one volatile change at the crash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChangeFate {
    Dropped,
    Persisted,
    /// A write that persisted in part: one fate per sector it touches, in
    /// file order.
    Torn(Vec<SectorFate>),
}

/// One fault in already-durable data (`media`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MediaFault {
    BitFlip {
        file: String,
        offset: u64,
        bit: u8,
    },
    /// The bytes of `source_sector` also landed on `target_sector`.
    Misdirected {
        file: String,
        source_sector: u64,
        target_sector: u64,
    },
}

/// Every fault choice of one crash image, explicitly. A pending change not
/// listed is dropped, so a shrinker can remove entries one by one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExplicitFates {
    /// Event index of a pending change → its fate.
    pub changes: BTreeMap<usize, ChangeFate>,
    pub media: Option<MediaFault>,
}

/// How the faults of an image are chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultChoices {
    /// Every random choice flows from a ChaCha8 generator seeded here.
    Seeded(u64),
    Explicit(ExplicitFates),
}

/// A volatile change, as the fate log describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeWhat {
    Write { offset: u64, len: u64 },
    SetLen { len: u64 },
    Create { name: String },
    Rename { from: String, to: String },
    Remove { name: String },
    Link { from: String, to: String },
    CreateDir { path: String },
    RemoveDir { path: String },
}

/// One volatile change and its fate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRecord {
    pub event_index: usize,
    pub file: FileId,
    /// The file's name in the live directory when the change was issued.
    pub name: String,
    pub what: ChangeWhat,
    pub fate: ChangeFate,
}

/// A change dropped for good by a failed sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRecord {
    pub event_index: usize,
    pub failed_sync_index: usize,
    pub file: FileId,
    pub name: String,
    pub what: ChangeWhat,
}

/// Everything a crash did, for `--explain` and for the shrinker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FateLog {
    pub profile: FaultProfile,
    pub crash_point: usize,
    pub sector_size: u64,
    /// Every change volatile at the crash, in issue order.
    pub changes: Vec<ChangeRecord>,
    /// Changes a failed sync dropped before the crash (never durable).
    pub lost_to_failed_sync: Vec<LostRecord>,
    pub media: Option<MediaFault>,
}

impl FateLog {
    /// The explicit choices that rebuild this image.
    pub fn to_explicit(&self) -> ExplicitFates {
        let changes = self
            .changes
            .iter()
            .filter(|record| record.fate != ChangeFate::Dropped)
            .map(|record| (record.event_index, record.fate.clone()))
            .collect();
        ExplicitFates {
            changes,
            media: self.media.clone(),
        }
    }
}

impl ChangeRecord {
    /// For a torn write: each absolute sector number (offset / sector size)
    /// with its fate.
    pub fn torn_sectors(&self, sector_size: u64) -> Vec<(u64, SectorFate)> {
        let (ChangeWhat::Write { offset, .. }, ChangeFate::Torn(sectors)) =
            (&self.what, &self.fate)
        else {
            return Vec::new();
        };
        let first = offset / sector_size;
        (first..).zip(sectors.iter().cloned()).collect()
    }
}

impl fmt::Display for ChangeWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeWhat::Write { offset, len } => write!(f, "write [{offset}, +{len})"),
            ChangeWhat::SetLen { len } => write!(f, "set_len {len}"),
            ChangeWhat::Create { name } => write!(f, "create {name:?}"),
            ChangeWhat::Rename { from, to } => write!(f, "rename {from:?} -> {to:?}"),
            ChangeWhat::Remove { name } => write!(f, "remove {name:?}"),
            ChangeWhat::Link { from, to } => write!(f, "link {from:?} -> {to:?}"),
            ChangeWhat::CreateDir { path } => write!(f, "create_dir {path:?}"),
            ChangeWhat::RemoveDir { path } => write!(f, "remove_dir {path:?}"),
        }
    }
}

impl fmt::Display for FateLog {
    /// One line per volatile change, lost write and media fault, for
    /// `--explain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} at crash point {} (sector {} bytes)",
            self.profile, self.crash_point, self.sector_size
        )?;
        for record in &self.lost_to_failed_sync {
            writeln!(
                f,
                "  event {}: {} of {:?} (file {}): lost for good by the failed sync at event {}",
                record.event_index, record.what, record.name, record.file, record.failed_sync_index
            )?;
        }
        for record in &self.changes {
            write!(
                f,
                "  event {}: {} of {:?} (file {}): ",
                record.event_index, record.what, record.name, record.file
            )?;
            match &record.fate {
                ChangeFate::Dropped => writeln!(f, "dropped")?,
                ChangeFate::Persisted => writeln!(f, "persisted")?,
                ChangeFate::Torn(_) => {
                    let sectors: Vec<String> = record
                        .torn_sectors(self.sector_size)
                        .into_iter()
                        .map(|(sector, fate)| match fate {
                            SectorFate::Kept => format!("{sector} kept"),
                            SectorFate::Lost => format!("{sector} lost"),
                            SectorFate::Garbage(_) => format!("{sector} garbage"),
                        })
                        .collect();
                    writeln!(f, "torn: sectors {}", sectors.join(", "))?;
                }
            }
        }
        match &self.media {
            Some(MediaFault::BitFlip { file, offset, bit }) => {
                writeln!(f, "  media: bit {bit} of byte {offset} of {file:?} flipped")
            }
            Some(MediaFault::Misdirected {
                file,
                source_sector,
                target_sector,
            }) => writeln!(
                f,
                "  media: sector {source_sector} of {file:?} also written over sector {target_sector}"
            ),
            None => Ok(()),
        }
    }
}

/// A crash image: the surviving files and how they came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashImage {
    /// Every reachable file: path → contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every reachable subdirectory (also the empty ones).
    pub dirs: BTreeSet<String>,
    pub fates: FateLog,
}

/// Why an image cannot be built (a malformed trace or bad explicit choices).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("crash point {crash_point} is beyond the trace ({len} events)")]
    CrashPointBeyondTrace { crash_point: usize, len: usize },
    #[error("crash point {crash_point} is behind the builder (at {cursor}); use a new builder")]
    CrashPointBehind { crash_point: usize, cursor: usize },
    #[error("event {event_index}: unknown file id {file}")]
    UnknownFile { event_index: usize, file: FileId },
    #[error("event {event_index}: create takes file id {file}, expected {expected}")]
    CreateOutOfOrder {
        event_index: usize,
        file: FileId,
        expected: FileId,
    },
    #[error("event {event_index}: file would exceed {FILE_LEN_MAX} bytes")]
    FileTooLarge { event_index: usize },
    #[error("more than {PENDING_CHANGES_MAX} volatile changes pending at event {event_index}")]
    TooManyPending { event_index: usize },
    #[error("explicit fate for event {event_index}, which is not a pending change")]
    NotPending { event_index: usize },
    #[error("event {event_index}: torn fate lists {got} sectors, the change spans {expected}")]
    TornMismatch {
        event_index: usize,
        expected: usize,
        got: usize,
    },
    #[error("media fault {fault:?} is outside the image")]
    MediaOutOfRange { fault: MediaFault },
}

/// A directory tree and its files' bytes: the durable or the live disk.
#[derive(Clone, Debug, Default)]
struct Disk {
    dir: BTreeMap<String, FileId>,
    /// The subdirectories (the root is implied).
    dirs: BTreeSet<String>,
    files: Vec<Arc<Vec<u8>>>,
}

/// A pending volatile change: the event is read from the trace.
#[derive(Clone, Debug)]
struct Pending {
    event_index: usize,
    name: String,
    /// For a rename: the file's other live names right after it (its hard
    /// links), which the rename leaves alone; empty otherwise.
    keep: Vec<String>,
}

/// Walks one trace once and builds crash images at increasing crash points.
///
/// Cost per image: the pending changes plus the bytes of the output; the
/// trace prefix is never replayed again.
#[derive(Clone)]
pub struct ImageBuilder<'a> {
    events: &'a [Event],
    sector_size: u64,
    cursor: usize,
    durable: Disk,
    live: Disk,
    pending: Vec<Pending>,
    lost: Vec<LostRecord>,
}

impl<'a> ImageBuilder<'a> {
    /// A builder over `events`, starting from the fully durable `base`
    /// (its files get ids 0..n in path order; the parents of its paths are
    /// its subdirectories).
    pub fn new(
        base: &BTreeMap<String, Vec<u8>>,
        events: &'a [Event],
        sector_size: u64,
    ) -> ImageBuilder<'a> {
        ImageBuilder::new_tree(base, &BTreeSet::new(), events, sector_size)
    }

    /// As [`ImageBuilder::new`], with the durable subdirectories `base_dirs`
    /// too (empty ones included).
    pub fn new_tree(
        base: &BTreeMap<String, Vec<u8>>,
        base_dirs: &BTreeSet<String>,
        events: &'a [Event],
        sector_size: u64,
    ) -> ImageBuilder<'a> {
        assert!(sector_size > 0, "sector size must be positive");
        let mut durable = Disk::default();
        for (id, (name, data)) in base.iter().enumerate() {
            let id = FileId::try_from(id).expect("base image: too many files");
            durable.dir.insert(name.clone(), id);
            durable.files.push(Arc::new(data.clone()));
            add_ancestors(&mut durable.dirs, name);
        }
        for dir in base_dirs {
            add_ancestors(&mut durable.dirs, dir);
            durable.dirs.insert(dir.clone());
        }
        ImageBuilder {
            events,
            sector_size,
            cursor: 0,
            live: durable.clone(),
            durable,
            pending: Vec::new(),
            lost: Vec::new(),
        }
    }

    /// The crash point the builder has reached (events `0..cursor` applied).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Event indexes of the changes volatile at the current crash point.
    pub fn pending_event_indexes(&self) -> Vec<usize> {
        self.pending.iter().map(|p| p.event_index).collect()
    }

    /// The live subdirectories at the current crash point.
    pub fn live_dirs(&self) -> BTreeSet<String> {
        self.live.dirs.clone()
    }

    /// The live state (what reads see) at the current crash point.
    pub fn live_files(&self) -> BTreeMap<String, Vec<u8>> {
        disk_files(&self.live)
    }

    /// The durable state (what every power cut keeps) at the current point.
    pub fn durable_files(&self) -> BTreeMap<String, Vec<u8>> {
        disk_files(&self.durable)
    }

    /// Applies events up to (not including) `crash_point`.
    pub fn advance_to(&mut self, crash_point: usize) -> Result<(), ImageError> {
        if crash_point > self.events.len() {
            return Err(ImageError::CrashPointBeyondTrace {
                crash_point,
                len: self.events.len(),
            });
        }
        if crash_point < self.cursor {
            return Err(ImageError::CrashPointBehind {
                crash_point,
                cursor: self.cursor,
            });
        }
        while self.cursor < crash_point {
            self.step(self.cursor)?;
            self.cursor += 1;
        }
        Ok(())
    }

    /// The image of a crash after events `0..crash_point`.
    pub fn image_at(
        &mut self,
        crash_point: usize,
        profile: FaultProfile,
        choices: &FaultChoices,
    ) -> Result<CrashImage, ImageError> {
        self.advance_to(crash_point)?;
        if profile == FaultProfile::ProcessCrash {
            return Ok(self.process_crash_image());
        }
        let mut rng = match choices {
            FaultChoices::Seeded(seed) => Some(ChaCha8Rng::seed_from_u64(*seed)),
            FaultChoices::Explicit(_) => None,
        };
        let fates = match (&mut rng, choices) {
            (Some(rng), _) => self.choose_fates(rng, profile),
            (None, FaultChoices::Explicit(explicit)) => self.explicit_fates(explicit)?,
            (None, FaultChoices::Seeded(_)) => unreachable!("seeded choices have a generator"),
        };
        let (mut files, ids) = self.overlay(&fates);
        let media = match (&mut rng, choices) {
            (Some(rng), _) if profile == FaultProfile::Media => {
                self.choose_media(rng, &files, &ids)
            }
            (Some(_), _) => None,
            (None, FaultChoices::Explicit(explicit)) => explicit.media.clone(),
            (None, FaultChoices::Seeded(_)) => unreachable!("seeded choices have a generator"),
        };
        if let Some(fault) = &media {
            apply_media(&mut files, fault, self.sector_size)?;
        }
        Ok(CrashImage {
            files,
            dirs: self.overlay_dirs(&fates),
            fates: self.fate_log(profile, fates, media),
        })
    }

    // --- walking the trace ---

    fn step(&mut self, index: usize) -> Result<(), ImageError> {
        let events = self.events;
        match &events[index] {
            Event::Create { name, file } => self.step_create(index, name, *file),
            Event::Write { file, offset, data } => {
                self.check_file(index, *file)?;
                check_len(index, offset.saturating_add(data.len() as u64))?;
                let live = Arc::make_mut(&mut self.live.files[*file as usize]);
                apply_write(live, *offset, data, None, self.sector_size);
                self.push_pending(index, *file)
            }
            Event::SetLen { file, len } => {
                self.check_file(index, *file)?;
                check_len(index, *len)?;
                Arc::make_mut(&mut self.live.files[*file as usize]).resize(*len as usize, 0);
                self.push_pending(index, *file)
            }
            Event::Rename { from, to, file } => self.step_rename(index, from, to, *file),
            Event::Remove { name, file }
            | Event::Link {
                from: name, file, ..
            } => {
                self.check_file(index, *file)?;
                apply_dir_change(&mut self.live, &events[index], &[]);
                self.push_pending_named(index, name.clone(), Vec::new())
            }
            Event::CreateDir { path } | Event::RemoveDir { path } => {
                apply_dir_change(&mut self.live, &events[index], &[]);
                self.push_pending_named(index, path.clone(), Vec::new())
            }
            Event::SyncData { file, failed } | Event::SyncAll { file, failed } => {
                self.check_file(index, *file)?;
                self.sync(index, *failed, |event| {
                    data_change_file(event) == Some(*file)
                });
                Ok(())
            }
            Event::SyncDir { dir, failed } => {
                self.sync(index, *failed, |event| {
                    is_dir_change(event) && dir_change_parents(event).contains(&dir.as_str())
                });
                Ok(())
            }
            Event::CommitIssued { .. }
            | Event::CommitLogged { .. }
            | Event::Acked { .. }
            | Event::CommitFailed { .. }
            | Event::CheckpointIssued
            | Event::CheckpointAcked
            | Event::OpenIssued
            | Event::Opened => Ok(()),
        }
    }

    fn step_create(&mut self, index: usize, name: &str, file: FileId) -> Result<(), ImageError> {
        let expected = FileId::try_from(self.live.files.len()).expect("file ids fit in u32");
        if file != expected {
            return Err(ImageError::CreateOutOfOrder {
                event_index: index,
                file,
                expected,
            });
        }
        self.live.files.push(Arc::default());
        self.durable.files.push(Arc::default());
        apply_dir_change(&mut self.live, &self.events[index], &[]);
        self.push_pending_named(index, name.to_string(), Vec::new())
    }

    /// A rename between two names of one file changes nothing; any other
    /// keeps, for the images, the names the file still has besides `to`.
    fn step_rename(
        &mut self,
        index: usize,
        from: &str,
        to: &str,
        file: FileId,
    ) -> Result<(), ImageError> {
        self.check_file(index, file)?;
        let names_file = |name: &str| self.live.dir.get(name) == Some(&file);
        if from != to && names_file(from) && names_file(to) {
            return Ok(());
        }
        let keep: Vec<String> = self
            .live
            .dir
            .iter()
            .filter(|(name, id)| **id == file && *name != from && *name != to)
            .map(|(name, _)| name.clone())
            .collect();
        apply_dir_change(&mut self.live, &self.events[index], &keep);
        self.push_pending_named(index, from.to_string(), keep)
    }

    fn check_file(&self, index: usize, file: FileId) -> Result<(), ImageError> {
        if (file as usize) < self.live.files.len() {
            Ok(())
        } else {
            Err(ImageError::UnknownFile {
                event_index: index,
                file,
            })
        }
    }

    fn name_of(&self, file: FileId) -> String {
        self.live
            .dir
            .iter()
            .find(|(_, id)| **id == file)
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }

    fn push_pending(&mut self, index: usize, file: FileId) -> Result<(), ImageError> {
        let name = self.name_of(file);
        self.push_pending_named(index, name, Vec::new())
    }

    fn push_pending_named(
        &mut self,
        index: usize,
        name: String,
        keep: Vec<String>,
    ) -> Result<(), ImageError> {
        if self.pending.len() >= PENDING_CHANGES_MAX {
            return Err(ImageError::TooManyPending { event_index: index });
        }
        self.pending.push(Pending {
            event_index: index,
            name,
            keep,
        });
        Ok(())
    }

    /// A sync at `index` covering the pending changes `covers` selects:
    /// promoted to durable, or (failed) dropped for good.
    ///
    /// A file's names change in order: when a directory change of file F is
    /// covered, every earlier pending directory change of F is covered too
    /// (a rename into a synced directory cannot persist while the create
    /// before it, in an unsynced one, reverts and takes the name back).
    fn sync(&mut self, index: usize, failed: bool, covers: impl Fn(&Event) -> bool) {
        let events = self.events;
        let mut last_covered: HashMap<FileId, usize> = HashMap::new();
        for p in &self.pending {
            let event = &events[p.event_index];
            if is_dir_change(event) && covers(event) && event_file(event) != NO_FILE {
                last_covered.insert(event_file(event), p.event_index);
            }
        }
        let earlier_name_change = |event_index: usize| {
            let event = &events[event_index];
            is_dir_change(event)
                && last_covered
                    .get(&event_file(event))
                    .is_some_and(|last| event_index < *last)
        };
        let (covered, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| covers(&events[p.event_index]) || earlier_name_change(p.event_index));
        self.pending = rest;
        for change in covered {
            let event = &events[change.event_index];
            if failed {
                self.lost.push(LostRecord {
                    event_index: change.event_index,
                    failed_sync_index: index,
                    file: event_file(event),
                    name: change.name,
                    what: describe(event),
                });
            } else {
                apply_to_disk(&mut self.durable, event, &change.keep, self.sector_size);
            }
        }
    }

    // --- choosing fates ---

    fn choose_fates(&self, rng: &mut ChaCha8Rng, profile: FaultProfile) -> Vec<ChangeFate> {
        let garbage = profile == FaultProfile::TornGarbage;
        if profile == FaultProfile::PowerLossOrdered {
            let prefix = rng.random_range(0..=self.pending.len());
            let mut fates = vec![ChangeFate::Dropped; self.pending.len()];
            for (i, fate) in fates.iter_mut().enumerate().take(prefix) {
                *fate = if i + 1 == prefix {
                    self.persist_maybe_torn(rng, i, garbage)
                } else {
                    ChangeFate::Persisted
                };
            }
            return fates;
        }
        (0..self.pending.len())
            .map(|i| {
                if rng.random_bool(PERSIST_PROBABILITY) {
                    self.persist_maybe_torn(rng, i, garbage)
                } else {
                    ChangeFate::Dropped
                }
            })
            .collect()
    }

    fn persist_maybe_torn(&self, rng: &mut ChaCha8Rng, i: usize, garbage: bool) -> ChangeFate {
        let sectors = self.sectors_of(self.pending[i].event_index);
        let tearable = sectors >= 2 || (garbage && sectors >= 1);
        if !tearable || !rng.random_bool(TEAR_PROBABILITY) {
            return ChangeFate::Persisted;
        }
        let torn = (0..sectors)
            .map(|_| match rng.random_range(0..if garbage { 3 } else { 2 }) {
                0 => SectorFate::Kept,
                1 => SectorFate::Lost,
                _ => SectorFate::Garbage(rng.next_u64()),
            })
            .collect();
        ChangeFate::Torn(torn)
    }

    /// How many sectors the write at `event_index` touches (0 if no write).
    fn sectors_of(&self, event_index: usize) -> usize {
        match &self.events[event_index] {
            Event::Write { offset, data, .. } => {
                sector_span(*offset, data.len() as u64, self.sector_size)
            }
            _ => 0,
        }
    }

    fn explicit_fates(&self, explicit: &ExplicitFates) -> Result<Vec<ChangeFate>, ImageError> {
        let mut fates = vec![ChangeFate::Dropped; self.pending.len()];
        for (&event_index, fate) in &explicit.changes {
            let slot = self
                .pending
                .binary_search_by_key(&event_index, |p| p.event_index)
                .map_err(|_| ImageError::NotPending { event_index })?;
            if let ChangeFate::Torn(sectors) = fate {
                let expected = self.sectors_of(event_index);
                if sectors.len() != expected || expected == 0 {
                    return Err(ImageError::TornMismatch {
                        event_index,
                        expected,
                        got: sectors.len(),
                    });
                }
            }
            fates[slot] = fate.clone();
        }
        Ok(fates)
    }

    fn choose_media(
        &self,
        rng: &mut ChaCha8Rng,
        files: &BTreeMap<String, Vec<u8>>,
        ids: &BTreeMap<String, FileId>,
    ) -> Option<MediaFault> {
        // Candidates: files reachable in the image whose bytes were durable.
        let candidates: Vec<(&String, u64)> = files
            .iter()
            .filter_map(|(name, data)| {
                let id = ids[name];
                let durable_len = self.durable.files[id as usize].len().min(data.len());
                (durable_len > 0).then_some((name, durable_len as u64))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (name, safe_len) = candidates[rng.random_range(0..candidates.len())];
        let sectors = safe_len.div_ceil(self.sector_size);
        if sectors >= 2 && rng.random_bool(0.5) {
            let data = &files[name];
            for _ in 0..MISDIRECT_ATTEMPTS_MAX {
                let source_sector = rng.random_range(0..sectors);
                let target_sector = rng.random_range(0..sectors);
                let fault = MediaFault::Misdirected {
                    file: name.clone(),
                    source_sector,
                    target_sector,
                };
                let mut copy = data.clone();
                misdirect(&mut copy, source_sector, target_sector, self.sector_size);
                if copy != *data {
                    return Some(fault);
                }
            }
        }
        Some(MediaFault::BitFlip {
            file: name.clone(),
            offset: rng.random_range(0..safe_len),
            bit: rng.random_range(0..8),
        })
    }

    // --- building ---

    /// Durable state plus the persisted part of each pending change, applied
    /// in issue order on copies.
    fn overlay(
        &self,
        fates: &[ChangeFate],
    ) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, FileId>) {
        assert_eq!(
            fates.len(),
            self.pending.len(),
            "one fate per pending change"
        );
        let mut disk = Disk {
            dir: self.durable.dir.clone(),
            dirs: self.durable.dirs.clone(),
            files: Vec::new(),
        };
        let mut touched: HashMap<FileId, Vec<u8>> = HashMap::new();
        for (change, fate) in self.pending.iter().zip(fates) {
            let event = &self.events[change.event_index];
            let sectors = match fate {
                ChangeFate::Dropped => continue,
                ChangeFate::Persisted => None,
                ChangeFate::Torn(sectors) => Some(sectors.as_slice()),
            };
            if is_dir_change(event) {
                apply_dir_change(&mut disk, event, &change.keep);
                continue;
            }
            let file = event_file(event);
            let data = touched
                .entry(file)
                .or_insert_with(|| self.durable.files[file as usize].to_vec());
            apply_data_change(data, event, sectors, self.sector_size);
        }
        let mut files = BTreeMap::new();
        let mut dir = disk.dir;
        dir.retain(|name, _| reachable(&disk.dirs, name));
        for (name, id) in &dir {
            // Two names of one file (a hard link) get the same bytes.
            let data = touched
                .get(id)
                .cloned()
                .unwrap_or_else(|| self.durable.files[*id as usize].to_vec());
            files.insert(name.clone(), data);
        }
        (files, dir)
    }

    /// The subdirectories of the image the fates choose.
    fn overlay_dirs(&self, fates: &[ChangeFate]) -> BTreeSet<String> {
        let mut disk = Disk {
            dirs: self.durable.dirs.clone(),
            ..Disk::default()
        };
        for (change, fate) in self.pending.iter().zip(fates) {
            let event = &self.events[change.event_index];
            if *fate != ChangeFate::Dropped
                && matches!(event, Event::CreateDir { .. } | Event::RemoveDir { .. })
            {
                apply_dir_change(&mut disk, event, &[]);
            }
        }
        reachable_dirs(&disk.dirs)
    }

    fn process_crash_image(&self) -> CrashImage {
        let changes = self
            .pending
            .iter()
            .map(|p| self.change_record(p, ChangeFate::Persisted))
            .collect();
        CrashImage {
            files: disk_files(&self.live),
            dirs: reachable_dirs(&self.live.dirs),
            fates: FateLog {
                profile: FaultProfile::ProcessCrash,
                crash_point: self.cursor,
                sector_size: self.sector_size,
                changes,
                lost_to_failed_sync: Vec::new(),
                media: None,
            },
        }
    }

    fn fate_log(
        &self,
        profile: FaultProfile,
        fates: Vec<ChangeFate>,
        media: Option<MediaFault>,
    ) -> FateLog {
        let changes = self
            .pending
            .iter()
            .zip(fates)
            .map(|(p, fate)| self.change_record(p, fate))
            .collect();
        FateLog {
            profile,
            crash_point: self.cursor,
            sector_size: self.sector_size,
            changes,
            lost_to_failed_sync: self.lost.clone(),
            media,
        }
    }

    fn change_record(&self, pending: &Pending, fate: ChangeFate) -> ChangeRecord {
        let event = &self.events[pending.event_index];
        ChangeRecord {
            event_index: pending.event_index,
            file: event_file(event),
            name: pending.name.clone(),
            what: describe(event),
            fate,
        }
    }
}

/// Builds one image from scratch (a builder for a single crash point).
pub fn build_image(
    base: &BTreeMap<String, Vec<u8>>,
    events: &[Event],
    crash_point: usize,
    profile: FaultProfile,
    sector_size: u64,
    choices: &FaultChoices,
) -> Result<CrashImage, ImageError> {
    ImageBuilder::new(base, events, sector_size).image_at(crash_point, profile, choices)
}

fn disk_files(disk: &Disk) -> BTreeMap<String, Vec<u8>> {
    disk.dir
        .iter()
        .filter(|(name, _)| reachable(&disk.dirs, name))
        .map(|(name, id)| (name.clone(), disk.files[*id as usize].to_vec()))
        .collect()
}

/// Adds every ancestor directory of `path` (not `path` itself).
fn add_ancestors(dirs: &mut BTreeSet<String>, path: &str) {
    let mut parent = split_path(path).0;
    while !parent.is_empty() {
        dirs.insert(parent.to_string());
        parent = split_path(parent).0;
    }
}

/// True if every ancestor directory of `path` exists in `dirs`.
fn reachable(dirs: &BTreeSet<String>, path: &str) -> bool {
    let mut parent = split_path(path).0;
    while !parent.is_empty() {
        if !dirs.contains(parent) {
            return false;
        }
        parent = split_path(parent).0;
    }
    true
}

fn reachable_dirs(dirs: &BTreeSet<String>) -> BTreeSet<String> {
    dirs.iter()
        .filter(|dir| reachable(dirs, dir))
        .cloned()
        .collect()
}

/// The directories whose entries a directory change touches.
fn dir_change_parents(event: &Event) -> Vec<&str> {
    match event {
        Event::Create { name, .. } | Event::Remove { name, .. } => vec![split_path(name).0],
        Event::Link { to, .. } => vec![split_path(to).0],
        Event::Rename { from, to, .. } => vec![split_path(from).0, split_path(to).0],
        Event::CreateDir { path } | Event::RemoveDir { path } => vec![split_path(path).0],
        _ => Vec::new(),
    }
}

fn check_len(index: usize, end: u64) -> Result<(), ImageError> {
    if end <= FILE_LEN_MAX {
        Ok(())
    } else {
        Err(ImageError::FileTooLarge { event_index: index })
    }
}

fn is_dir_change(event: &Event) -> bool {
    matches!(
        event,
        Event::Create { .. }
            | Event::Rename { .. }
            | Event::Remove { .. }
            | Event::Link { .. }
            | Event::CreateDir { .. }
            | Event::RemoveDir { .. }
    )
}

/// The file a `Write` or `SetLen` changes.
fn data_change_file(event: &Event) -> Option<FileId> {
    match event {
        Event::Write { file, .. } | Event::SetLen { file, .. } => Some(*file),
        _ => None,
    }
}

/// The file a pending change concerns.
fn event_file(event: &Event) -> FileId {
    match event {
        Event::Create { file, .. }
        | Event::Write { file, .. }
        | Event::SetLen { file, .. }
        | Event::Rename { file, .. }
        | Event::Remove { file, .. }
        | Event::Link { file, .. } => *file,
        Event::CreateDir { .. } | Event::RemoveDir { .. } => NO_FILE,
        other => panic!("not a volatile change: {other:?}"),
    }
}

fn describe(event: &Event) -> ChangeWhat {
    match event {
        Event::Write { offset, data, .. } => ChangeWhat::Write {
            offset: *offset,
            len: data.len() as u64,
        },
        Event::SetLen { len, .. } => ChangeWhat::SetLen { len: *len },
        Event::Create { name, .. } => ChangeWhat::Create { name: name.clone() },
        Event::Rename { from, to, .. } => ChangeWhat::Rename {
            from: from.clone(),
            to: to.clone(),
        },
        Event::Remove { name, .. } => ChangeWhat::Remove { name: name.clone() },
        Event::Link { from, to, .. } => ChangeWhat::Link {
            from: from.clone(),
            to: to.clone(),
        },
        Event::CreateDir { path } => ChangeWhat::CreateDir { path: path.clone() },
        Event::RemoveDir { path } => ChangeWhat::RemoveDir { path: path.clone() },
        other => panic!("not a volatile change: {other:?}"),
    }
}

fn apply_to_disk(disk: &mut Disk, event: &Event, keep: &[String], sector_size: u64) {
    if is_dir_change(event) {
        apply_dir_change(disk, event, keep);
    } else {
        let file = event_file(event) as usize;
        let data = Arc::make_mut(&mut disk.files[file]);
        apply_data_change(data, event, None, sector_size);
    }
}

/// A directory change. `keep`, for a rename: the names of the file that the
/// rename leaves alone (its other live names); every other name of the
/// file goes, as the rename moved it.
fn apply_dir_change(disk: &mut Disk, event: &Event, keep: &[String]) {
    let dir = &mut disk.dir;
    match event {
        Event::CreateDir { path } => {
            disk.dirs.insert(path.clone());
        }
        Event::RemoveDir { path } => {
            disk.dirs.remove(path);
        }
        Event::Create { name, file } => {
            dir.retain(|_, id| id != file);
            dir.insert(name.clone(), *file);
        }
        Event::Rename { to, file, .. } => {
            dir.retain(|name, id| id != file || keep.contains(name));
            dir.insert(to.clone(), *file);
        }
        Event::Link { to, file, .. } => {
            dir.insert(to.clone(), *file);
        }
        Event::Remove { name, file } => {
            if dir.get(name) == Some(file) {
                dir.remove(name);
            }
        }
        other => panic!("not a directory change: {other:?}"),
    }
}

fn apply_data_change(
    data: &mut Vec<u8>,
    event: &Event,
    sectors: Option<&[SectorFate]>,
    sector_size: u64,
) {
    match event {
        Event::Write {
            offset, data: new, ..
        } => apply_write(data, *offset, new, sectors, sector_size),
        Event::SetLen { len, .. } => {
            assert!(sectors.is_none(), "a size change cannot be torn");
            data.resize(*len as usize, 0);
        }
        other => panic!("not a data change: {other:?}"),
    }
}

/// How many sectors `[offset, offset + len)` touches.
fn sector_span(offset: u64, len: u64, sector_size: u64) -> usize {
    if len == 0 {
        return 0;
    }
    let first = offset / sector_size;
    let last = (offset + len - 1) / sector_size;
    usize::try_from(last - first + 1).expect("sector count fits in usize")
}

/// Writes `new` at `offset` (extending with zeros), all of it or, when torn,
/// sector by sector.
fn apply_write(
    data: &mut Vec<u8>,
    offset: u64,
    new: &[u8],
    sectors: Option<&[SectorFate]>,
    sector_size: u64,
) {
    let start = offset as usize;
    let end = start + new.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    let Some(sectors) = sectors else {
        data[start..end].copy_from_slice(new);
        return;
    };
    assert_eq!(
        sectors.len(),
        sector_span(offset, new.len() as u64, sector_size)
    );
    let first = offset / sector_size;
    for (i, fate) in sectors.iter().enumerate() {
        let sector = first + i as u64;
        let from = (sector * sector_size).max(offset) as usize;
        let to = ((sector + 1) * sector_size).min(offset + new.len() as u64) as usize;
        match fate {
            SectorFate::Kept => data[from..to].copy_from_slice(&new[from - start..to - start]),
            SectorFate::Lost => {}
            SectorFate::Garbage(seed) => {
                ChaCha8Rng::seed_from_u64(*seed).fill_bytes(&mut data[from..to])
            }
        }
    }
}

fn misdirect(data: &mut [u8], source_sector: u64, target_sector: u64, sector_size: u64) {
    let len = data.len() as u64;
    let source =
        (source_sector * sector_size).min(len)..((source_sector + 1) * sector_size).min(len);
    let target =
        (target_sector * sector_size).min(len)..((target_sector + 1) * sector_size).min(len);
    let n = (source.end - source.start).min(target.end - target.start) as usize;
    let source_start = source.start as usize;
    data.copy_within(source_start..source_start + n, target.start as usize);
}

fn apply_media(
    files: &mut BTreeMap<String, Vec<u8>>,
    fault: &MediaFault,
    sector_size: u64,
) -> Result<(), ImageError> {
    let out_of_range = || ImageError::MediaOutOfRange {
        fault: fault.clone(),
    };
    match fault {
        MediaFault::BitFlip { file, offset, bit } => {
            let data = files.get_mut(file).ok_or_else(out_of_range)?;
            let byte = data.get_mut(*offset as usize).ok_or_else(out_of_range)?;
            if *bit >= 8 {
                return Err(out_of_range());
            }
            *byte ^= 1 << bit;
        }
        MediaFault::Misdirected {
            file,
            source_sector,
            target_sector,
        } => {
            let data = files.get_mut(file).ok_or_else(out_of_range)?;
            let sectors = (data.len() as u64).div_ceil(sector_size);
            if *source_sector >= sectors || *target_sector >= sectors {
                return Err(out_of_range());
            }
            misdirect(data, *source_sector, *target_sector, sector_size);
        }
    }
    Ok(())
}
