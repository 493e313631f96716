//! Checkpoints: how far a run got, so that the same command resumes after a crash and ends
//! with the same outputs as a run that was never interrupted (`docs/checkpoints.md`).
//!
//! A checkpoint is taken by the writer at a watermark `w`, when every report of an earlier time
//! is written: it records the partial output files' lengths, the writer's counts, the audit
//! chain's head, and, per file partition, the furthest position before which every event is
//! earlier than `w - replay_horizon - max_out_of_order`. No operator state is saved: a resumed
//! run reads again from those positions, so the detectors rebuild the state they hold from the
//! events of the horizon (bounded replay), and the writer skips what it had written before `w`.
//! The file is written whole (write, sync, rename, sync the folder), so a crash leaves the old
//! checkpoint or the new one, never a mix. In a cluster, process 0 keeps the checkpoints of all
//! processes: the others send it their partitions' points while they read
//! ([`crate::cluster::SampleShipper`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::{ReadProgress, ResumePoint};
use crate::output::{CheckpointHook, WriterState};

/// The checkpoint's file name in its folder.
pub const CHECKPOINT: &str = "checkpoint.json";

/// The version of the checkpoint's layout.
const LAYOUT: u32 = 1;

/// How far a run got: what it had written and where its inputs resume.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The layout of this file.
    pub layout: u32,
    /// The job it belongs to.
    pub job: JobIdentity,
    /// The output folder it describes.
    pub out_dir: PathBuf,
    /// When it was written (milliseconds since the Unix epoch).
    pub written_unix_ms: u64,
    /// Checkpoints the job has written so far, this one included.
    pub sequence: u64,
    /// Times the job was resumed before this checkpoint.
    pub resumed: u64,
    /// What the writer had written.
    pub writer: WriterState,
    /// Where each file partition resumes.
    pub resume: Vec<ResumePoint>,
}

/// What a checkpoint must match to be resumed: the version and everything the results depend
/// on. The checkpoint's own settings are not part of it, so a resumed run may change them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobIdentity {
    /// The surveil version.
    pub version: String,
    /// The digest of the effective configuration.
    pub config_sha256: String,
    /// The inputs: path, format and size.
    pub inputs: Vec<String>,
    /// The digest of the files the configuration names (reference data, model, case actions).
    pub named_files_sha256: String,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing it failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this version can read.
    #[error("checkpoint {path} cannot be read ({message}); remove it to start the run over")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It was written by another job or version.
    #[error(
        "checkpoint {path} was written by a different job: {difference}; remove it (or choose another checkpoint folder) to start the run over"
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What differs.
        difference: String,
    },
}

impl Checkpoint {
    /// The checkpoint in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(CHECKPOINT);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let layout: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| CheckpointError::Unreadable { path: path.clone(), message: e.to_string() })?;
        match layout.get("layout").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(LAYOUT) => {}
            other => {
                return Err(CheckpointError::Unreadable {
                    path,
                    message: format!("layout {} where this surveil reads layout {LAYOUT}", other.unwrap_or(0)),
                });
            }
        }
        serde_json::from_value(layout)
            .map(Some)
            .map_err(|e| CheckpointError::Unreadable { path, message: e.to_string() })
    }

    /// Refuses a checkpoint of another job, version or output folder, saying what differs.
    pub fn check(&self, dir: &Path, job: &JobIdentity, out_dir: &Path) -> Result<(), CheckpointError> {
        let mine = &self.job;
        let difference = if mine.version != job.version {
            Some(format!("surveil {} wrote it and this is surveil {}", mine.version, job.version))
        } else if mine.inputs != job.inputs {
            Some(format!("its inputs were [{}], these are [{}]", mine.inputs.join(", "), job.inputs.join(", ")))
        } else if mine.config_sha256 != job.config_sha256 {
            Some("the configuration differs".to_string())
        } else if mine.named_files_sha256 != job.named_files_sha256 {
            Some("the reference data, model or case-action files differ".to_string())
        } else if !same_folder(&self.out_dir, out_dir) {
            Some(format!("it describes the output folder {}, not {}", self.out_dir.display(), out_dir.display()))
        } else {
            None
        };
        match difference {
            Some(difference) => Err(CheckpointError::Incompatible { path: dir.join(CHECKPOINT), difference }),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint into `dir` atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let temporary = dir.join(format!("{CHECKPOINT}.new"));
        {
            let mut file = std::fs::File::create(&temporary)?;
            serde_json::to_writer(&mut file, self)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, dir.join(CHECKPOINT))?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Removes the checkpoint in `dir`: the run it describes is finished.
    pub fn remove(dir: &Path) -> Result<(), CheckpointError> {
        let path = dir.join(CHECKPOINT);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CheckpointError::Io { path, source: e }),
            _ => {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                Ok(())
            }
        }
    }
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// When the last checkpoint was written, for live metrics.
#[derive(Debug, Default)]
pub struct CheckpointClock {
    written_unix_ms: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl CheckpointClock {
    /// When the last checkpoint was written (milliseconds since the Unix epoch), if one was.
    pub fn last_unix_ms(&self) -> Option<u64> {
        let ms = self.written_unix_ms.load(std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then_some(ms)
    }

    /// Checkpoints written by this run.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes a job's checkpoints, for the report writer ([`CheckpointHook`]).
pub struct Checkpointer {
    dir: PathBuf,
    interval: Duration,
    /// Replay horizon plus the out-of-order bound (ns): how far before the watermark the
    /// resume positions stay.
    behind: u64,
    job: JobIdentity,
    out_dir: PathBuf,
    progress: Arc<ReadProgress>,
    last: Instant,
    last_watermark: u64,
    sequence: u64,
    resumed: u64,
    clock: Arc<CheckpointClock>,
    /// Set when the run is asked to stop: the sources stop reading, and what drains after is
    /// not a watermark the inputs have reached, so no checkpoint is taken from then on.
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Every partition of the run (input, start): one whose samples have not arrived yet (from
    /// another process of a cluster) resumes from its start.
    partitions: Vec<(u32, u64)>,
    /// Every partition resumes from its start.
    from_the_start: bool,
}

impl Checkpointer {
    /// Checkpoints of `job` (writing into `out_dir`) in `dir`, every `interval`, with resume
    /// positions `behind` nanoseconds of event time before the watermark. `earlier` is the
    /// checkpoint the run resumed from, if any.
    pub fn new(
        dir: &Path,
        interval: Duration,
        behind: u64,
        job: JobIdentity,
        out_dir: &Path,
        progress: Arc<ReadProgress>,
        earlier: Option<&Checkpoint>,
    ) -> Checkpointer {
        progress.sample_resume_points();
        Checkpointer {
            dir: dir.into(),
            interval,
            behind,
            job,
            out_dir: out_dir.into(),
            progress,
            last: Instant::now(),
            last_watermark: earlier.map_or(0, |c| c.writer.watermark),
            sequence: earlier.map_or(0, |c| c.sequence),
            resumed: earlier.map_or(0, |c| c.resumed + 1),
            clock: Arc::default(),
            stop: None,
            partitions: Vec::new(),
            from_the_start: false,
        }
    }

    /// Resumes every partition from its start, whatever the watermark: for a run whose outputs
    /// outside the output folder are written whole from the inputs, as the Parquet archive's
    /// files are (a day's partition is one file, published when the day ends, under the same
    /// name by every run over the same inputs). A resumed run then reads everything again and
    /// writes every archive file whole, while the writer still skips what the output folder
    /// already holds (and lists, to skip them, every dead letter and late event written so
    /// far). For a one-day replay with the default horizon this is what resuming reads anyway.
    pub fn resuming_from_the_start(mut self) -> Checkpointer {
        self.progress.stop_sampling_resume_points();
        self.from_the_start = true;
        self
    }

    /// Resumes every partition of `partitions` (input, start) that has no point of its own
    /// from its start, and keeps the dead letters and late events it may have written: in a
    /// cluster, the points of other processes' partitions arrive while the run reads, and a
    /// partition's dead letters may be written before its first point arrives.
    pub fn covering(mut self, partitions: Vec<(u32, u64)>) -> Checkpointer {
        self.partitions = partitions;
        self
    }

    /// Takes no checkpoint once `stop` is set (the run's stop flag, which the sources read).
    pub fn stopping_with(mut self, stop: Arc<std::sync::atomic::AtomicBool>) -> Checkpointer {
        self.stop = Some(stop);
        self
    }

    /// When checkpoints were written, for live metrics.
    pub fn clock(&self) -> Arc<CheckpointClock> {
        self.clock.clone()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl CheckpointHook for Checkpointer {
    fn due(&mut self, watermark: u64) -> bool {
        let stopping = self.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        !stopping && watermark > self.last_watermark && self.last.elapsed() >= self.interval
    }

    fn save(&mut self, mut writer: WriterState) -> std::io::Result<BTreeMap<u32, u64>> {
        let resume = if self.from_the_start {
            Vec::new()
        } else {
            self.progress.resume_points(writer.watermark.saturating_sub(self.behind))
        };
        // A partition that resumes at `offset` reads its side records from there again.
        let mut oldest: BTreeMap<u32, u64> = BTreeMap::new();
        for point in &resume {
            let offset = oldest.entry(point.source).or_insert(u64::MAX);
            *offset = (*offset).min(point.offset);
        }
        for &(source, start) in &self.partitions {
            if resume.binary_search_by_key(&(source, start), |p| (p.source, p.start)).is_err() {
                let offset = oldest.entry(source).or_insert(u64::MAX);
                *offset = (*offset).min(start);
            }
        }
        let kept = |source: u32, offset: u64| oldest.get(&source).is_none_or(|o| offset >= *o);
        writer.dead_letters.retain(|(source, offset)| kept(*source, *offset));
        writer.late_events.retain(|origin| {
            let origin = crate::model::Origin(*origin);
            kept(origin.source(), origin.offset())
        });
        self.sequence += 1;
        let written_unix_ms = unix_ms();
        let checkpoint = Checkpoint {
            layout: LAYOUT,
            job: self.job.clone(),
            out_dir: self.out_dir.clone(),
            written_unix_ms,
            sequence: self.sequence,
            resumed: self.resumed,
            writer,
            resume,
        };
        checkpoint.save(&self.dir)?;
        self.last = Instant::now();
        self.last_watermark = checkpoint.writer.watermark;
        self.clock.written_unix_ms.store(written_unix_ms, std::sync::atomic::Ordering::Relaxed);
        self.clock.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(watermark = checkpoint.writer.watermark, sequence = self.sequence, "checkpoint written");
        Ok(oldest)
    }
}
