//! Running one job over several processes: timely's own cluster mode, with surveil's rules on
//! top of it (process 0 writes every output; the processes check they run the same job; the
//! others' reading is counted in process 0's summary; a lost process is named).
//!
//! Timely connects the processes (each to every other, over TCP) and spreads the workers over
//! them: with `P` processes of `W` threads, worker `p * W + i` is thread `i` of process `p`.
//! File inputs are planned in blocks dealt to every worker of every process, so each process
//! opens the same paths: they must be on storage every process sees (a shared volume, or a
//! copy of the same bytes on each machine). Reports are exchanged to worker 0, which is in
//! process 0. Timely is fail-stop: when one process dies, its peers' connections fail and they
//! stop too; [`communication_failure`] names the process whose connection failed.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::{Broadcast, ToStream};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::ingest::{ProgressSnapshot, ReadProgress, ResumePoint};

/// The first port of the default addresses, as timely's own default (`localhost:2101`, ...).
pub const FIRST_PORT: u16 = 2101;

/// How long a process waits for the others to connect, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why cluster settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The host file cannot be read.
    #[error("host file {path}: {source}")]
    HostFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The settings contradict each other.
    #[error("{0}")]
    Invalid(String),
}

/// Where this process sits in a cluster of processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index, from 0. Process 0 writes the outputs.
    pub process: usize,
    /// Every process's address (`host:port`), by index; this process listens on its own.
    pub addresses: Vec<String>,
    /// How long to wait for every process to connect before giving up.
    pub connect_timeout: Duration,
}

impl Cluster {
    /// `processes` processes on this machine, listening on 127.0.0.1 from `first_port` up.
    pub fn local(processes: usize, process: usize, first_port: u16) -> Result<Cluster, ClusterError> {
        let addresses = (0..processes).map(|i| format!("127.0.0.1:{}", first_port as usize + i)).collect();
        Cluster::new(process, addresses)
    }

    /// The first `processes` lines of a host file, one `host:port` per line (timely's `-h`).
    pub fn from_hostfile(path: &Path, processes: usize, process: usize) -> Result<Cluster, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClusterError::HostFile { path: path.display().to_string(), source })?;
        let addresses: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
        if addresses.len() < processes {
            return Err(ClusterError::Invalid(format!(
                "host file {} has {} addresses for {processes} processes",
                path.display(),
                addresses.len()
            )));
        }
        Cluster::new(process, addresses.into_iter().take(processes).collect())
    }

    /// Checks the settings: an index within the cluster, addresses that are `host:port` and
    /// distinct.
    pub fn new(process: usize, addresses: Vec<String>) -> Result<Cluster, ClusterError> {
        if addresses.is_empty() {
            return Err(ClusterError::Invalid("a cluster needs at least one process".into()));
        }
        if process >= addresses.len() {
            return Err(ClusterError::Invalid(format!(
                "process index {process} is outside a cluster of {} processes (indices 0 to {})",
                addresses.len(),
                addresses.len() - 1
            )));
        }
        for (i, address) in addresses.iter().enumerate() {
            let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(ClusterError::Invalid(format!("address of process {i} is not host:port: {address:?}")));
            }
            if addresses[..i].contains(address) {
                return Err(ClusterError::Invalid(format!("process {i} has the same address as another: {address}")));
            }
        }
        Ok(Cluster { process, addresses, connect_timeout: CONNECT_TIMEOUT })
    }

    /// Processes in the cluster.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }

    /// The timely configuration for `threads` worker threads in this process.
    pub fn timely(&self, threads: usize) -> timely::Config {
        let communication = if self.processes() == 1 {
            timely::CommunicationConfig::Process(threads.max(1))
        } else {
            timely::CommunicationConfig::Cluster {
                threads: threads.max(1),
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}

/// The layout a timely configuration describes: this process's index, the processes, and the
/// worker threads per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// This process's index.
    pub process: usize,
    /// Processes in all.
    pub processes: usize,
    /// Worker threads per process.
    pub threads: usize,
}

impl Layout {
    /// The layout of `config`.
    pub fn of(config: &timely::Config) -> Layout {
        match &config.communication {
            timely::CommunicationConfig::Thread => Layout { process: 0, processes: 1, threads: 1 },
            timely::CommunicationConfig::Process(n) | timely::CommunicationConfig::ProcessBinary(n) => {
                Layout { process: 0, processes: 1, threads: *n }
            }
            timely::CommunicationConfig::Cluster { threads, process, addresses, .. } => {
                Layout { process: *process, processes: addresses.len(), threads: *threads }
            }
        }
    }

    /// Workers in all.
    pub fn workers(&self) -> usize {
        self.processes * self.threads
    }

    /// The process that runs `worker`.
    pub fn process_of(&self, worker: usize) -> usize {
        worker / self.threads.max(1)
    }
}

/// The first communication failure of this process: which process's connection failed, and how.
static FAILURE: OnceLock<Mutex<Option<String>>> = OnceLock::new();

/// Records the failure of a connection to another process when it happens, so that the run's
/// error can name that process. Timely's network threads are named `timely:recv-P` and
/// `timely:send-P` and panic when their connection to process `P` fails; the hook keeps the
/// panic's message and passes it on to the hook that was there before.
pub fn watch_connections() {
    let mut installed = false;
    FAILURE.get_or_init(|| {
        installed = true;
        Mutex::new(None)
    });
    if !installed {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let peer = thread.name().and_then(|n| n.strip_prefix("timely:recv-").or(n.strip_prefix("timely:send-")));
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // Only a failed connection: a network thread also panics when a local worker did
        // (its queue is poisoned), and that is the worker's failure, not the peer's.
        if let (Some(peer), Some(failure)) = (peer, FAILURE.get())
            && message.starts_with("timely communication error")
            && let Ok(mut failure) = failure.lock()
            && failure.is_none()
        {
            *failure = Some(format!("the connection to process {peer} failed ({message})"));
        }
        previous(info);
    }));
}

/// Forgets an earlier run's failed connection, before a new run.
pub fn reset_connections() {
    if let Some(failure) = FAILURE.get()
        && let Ok(mut failure) = failure.lock()
    {
        *failure = None;
    }
}

/// The first failed connection to another process, if one failed ([`watch_connections`]).
pub fn communication_failure() -> Option<String> {
    FAILURE.get().and_then(|f| f.lock().ok().and_then(|f| f.clone()))
}

/// Checks that every process runs the same job: each worker sends `fingerprint` (a digest of
/// the version, configuration and inputs) to all, and all compare. On a mismatch every worker
/// gets the same error, so every process stops cleanly before reading anything.
pub fn agree(worker: &mut timely::worker::Worker, layout: Layout, fingerprint: &str) -> Result<(), String> {
    let seen: Rc<RefCell<Vec<(usize, String)>>> = Rc::default();
    let probe = ProbeHandle::new();
    let index = worker.index();
    let mine = vec![(index, fingerprint.to_string())];
    let sink = seen.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        mine.to_stream(scope)
            .broadcast()
            .inspect(move |x: &(usize, String)| sink.borrow_mut().push(x.clone()))
            .probe_with(&probe);
    });
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(100)));
    }
    let mut seen = seen.take();
    seen.sort();
    let expected = seen.iter().find(|(w, _)| *w == 0).map(|(_, f)| f.clone()).unwrap_or_default();
    match seen.iter().find(|(_, f)| *f != expected) {
        Some((worker, _)) => Err(format!(
            "process {} runs a different job than process 0 (version, configuration, inputs or \
             worker threads differ): start every process with the same command but its index",
            layout.process_of(*worker)
        )),
        None => Ok(()),
    }
}

/// Brings every process's reading to worker 0: the first worker of each other process sends
/// what its process read (and why it stopped early, `interrupted`), and worker 0 adds it to
/// `progress`. Called once the run's dataflow is complete, so the counts are final. Returns,
/// on worker 0, why the first other process that stopped early did (`process P: REASON`).
pub fn gather_progress(
    worker: &mut timely::worker::Worker,
    layout: Layout,
    progress: &ReadProgress,
    interrupted: Option<String>,
) -> Option<String> {
    let received: Rc<RefCell<Vec<(usize, ProgressSnapshot)>>> = Rc::default();
    let probe = ProbeHandle::new();
    let index = worker.index();
    let process = layout.process_of(index);
    let sends = index.is_multiple_of(layout.threads.max(1)) && process != 0;
    let mine =
        if sends { vec![(process, ProgressSnapshot { interrupted, ..progress.snapshot() })] } else { Vec::new() };
    let sink = received.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        mine.to_stream(scope)
            .exchange(|_| 0)
            .inspect(move |x: &(usize, ProgressSnapshot)| sink.borrow_mut().push(x.clone()))
            .probe_with(&probe);
    });
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(100)));
    }
    let mut received = received.take();
    received.sort_by_key(|(process, _)| *process);
    let mut reason = None;
    for (process, snapshot) in received {
        progress.absorb(&snapshot);
        if let (None, Some(why)) = (&reason, snapshot.interrupted) {
            reason = Some(format!("process {process}: {why}"));
        }
    }
    reason
}

/// Hands every worker the points its partitions resume from: worker 0 sends `points` (those
/// of the checkpoint process 0 resumes from; `None` on the other workers), and each worker
/// receives them before it plans its partitions. Every worker of a cluster that keeps
/// checkpoints calls it at the same place.
pub fn share_resume_points(worker: &mut timely::worker::Worker, points: Option<Vec<ResumePoint>>) -> Vec<ResumePoint> {
    let received: Rc<RefCell<Vec<ResumePoint>>> = Rc::default();
    let probe = ProbeHandle::new();
    let mine: Vec<Vec<ResumePoint>> = if worker.index() == 0 { vec![points.unwrap_or_default()] } else { Vec::new() };
    let sink = received.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        mine.to_stream(scope)
            .broadcast()
            .inspect(move |points: &Vec<ResumePoint>| sink.borrow_mut().extend(points.iter().cloned()))
            .probe_with(&probe);
    });
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(100)));
    }
    received.take()
}

/// Sends the points the partitions of a process other than 0 could resume from to worker 0
/// while the run reads, so that process 0's checkpoints cover every partition of the cluster.
/// A point is a fact about the input (before this offset, every event is earlier than that
/// time), so it may arrive at any moment: process 0 uses the furthest one that is behind its
/// checkpoint's watermark, and resumes a partition whose points have not arrived from its start.
pub struct SampleShipper {
    input: Option<InputHandle<u64, CapacityContainerBuilder<Vec<Vec<ResumePoint>>>>>,
    /// This worker sends its process's samples (the first worker of a process other than 0).
    sends: bool,
    progress: std::sync::Arc<ReadProgress>,
    last: std::time::Instant,
}

/// How often a process sends its samples to worker 0.
const SHIP_EVERY: Duration = Duration::from_millis(50);

impl SampleShipper {
    /// Builds the dataflow that carries the samples; every worker calls it at the same place.
    /// On worker 0, what arrives is added to `progress` ([`ReadProgress::add_samples`]).
    pub fn new(
        worker: &mut timely::worker::Worker,
        layout: Layout,
        progress: std::sync::Arc<ReadProgress>,
    ) -> SampleShipper {
        let index = worker.index();
        let sends = index.is_multiple_of(layout.threads.max(1)) && layout.process_of(index) != 0;
        let mut input = InputHandle::new();
        let receiver = progress.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope.input_from(&mut input).exchange(|_| 0).inspect(move |points: &Vec<ResumePoint>| {
                receiver.add_samples(points.iter().cloned());
            });
        });
        SampleShipper { input: Some(input), sends, progress, last: std::time::Instant::now() }
    }

    /// Sends what was sampled since the last call, at most every few tens of milliseconds.
    pub fn tick(&mut self) {
        if self.last.elapsed() >= SHIP_EVERY {
            self.send();
        }
    }

    fn send(&mut self) {
        self.last = std::time::Instant::now();
        if !self.sends {
            return;
        }
        let points = self.progress.take_samples();
        if let (false, Some(input)) = (points.is_empty(), self.input.as_mut()) {
            input.send(points);
            // Closing the epoch flushes the exchange's buffers: the points leave now.
            let next = *input.time() + 1;
            input.advance_to(next);
        }
    }

    /// Sends the last samples and closes the dataflow's input.
    pub fn close(&mut self) {
        self.send();
        self.input = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn settings_are_checked() {
        let cluster = Cluster::local(2, 1, 4000).expect("test setup");
        assert_eq!(cluster.addresses, vec!["127.0.0.1:4000", "127.0.0.1:4001"]);
        assert_eq!(Layout::of(&cluster.timely(3)), Layout { process: 1, processes: 2, threads: 3 });
        assert_eq!(Layout::of(&Cluster::local(1, 0, 4000).expect("test setup").timely(2)).processes, 1);
        let error = Cluster::local(2, 2, 4000).expect_err("refused").to_string();
        assert!(error.contains("outside a cluster of 2"), "{error}");
        let error = Cluster::new(0, vec!["a:1".into(), "a:1".into()]).expect_err("refused").to_string();
        assert!(error.contains("same address"), "{error}");
        let error = Cluster::new(0, vec!["nohost".into()]).expect_err("refused").to_string();
        assert!(error.contains("not host:port"), "{error}");
    }

    #[test]
    fn host_files_give_the_first_addresses() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "# cluster\n10.0.0.1:2101\n\n10.0.0.2:2101\n10.0.0.3:2101\n").expect("test setup");
        let cluster = Cluster::from_hostfile(&path, 2, 0).expect("test setup");
        assert_eq!(cluster.addresses, vec!["10.0.0.1:2101", "10.0.0.2:2101"]);
        let error = Cluster::from_hostfile(&path, 4, 0).expect_err("refused").to_string();
        assert!(error.contains("3 addresses for 4 processes"), "{error}");
        assert!(Cluster::from_hostfile(&dir.path().join("missing"), 2, 0).is_err());
    }

    #[test]
    fn workers_agree() {
        // Two threads of one process exercise the same exchange a cluster does.
        let layout = Layout { process: 0, processes: 1, threads: 2 };
        let results = timely::execute(timely::Config::process(2), move |worker| {
            let same = agree(worker, layout, "job");
            let different = agree(worker, layout, if worker.index() == 1 { "other" } else { "job" });
            (same, different)
        })
        .expect("test setup")
        .join();
        for result in results {
            let (same, different) = result.expect("test setup");
            assert!(same.is_ok());
            assert!(different.expect_err("refused").contains("process 0 runs a different job"));
        }
    }

    #[test]
    fn snapshots_add_up() {
        let progress = Arc::new(ReadProgress::default());
        let mut partition = progress.track(0, 0);
        partition.read(&[], 100);
        partition.finish();
        let other = ReadProgress::default();
        other.absorb(&progress.snapshot());
        assert_eq!(other.bytes(), 100);
        assert_eq!(other.positions(), progress.positions());
        assert_eq!(other.snapshot(), progress.snapshot());
    }
}
