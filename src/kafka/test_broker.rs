//! A real Kafka-protocol broker for integration tests: tansu, started on a free loopback port
//! with its SQLite storage in a temporary folder (optionally behind a TLS listener made by
//! stunnel, from Debian's packages), and a reader of whole topics.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaError, partition_count};
use crate::config::KafkaConfig;

/// A message read back: key, payload and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The key, as text.
    pub key: String,
    /// The payload, as text.
    pub payload: String,
    /// The headers.
    pub headers: BTreeMap<String, String>,
}

/// A tansu broker on 127.0.0.1, stopped when dropped. The binary is `SURVEIL_TANSU`, else
/// `~/.cache/surveil/tansu/bin/tansu` (where `scripts/test-all.sh` installs it).
pub struct TestBroker {
    child: Child,
    /// The address clients use: tansu's own, or the TLS listener's.
    address: String,
    /// tansu's plain listener.
    plain: String,
    /// stunnel in front of tansu, for a broker reached over TLS.
    tls: Option<Child>,
    /// The broker's storage and log, removed when dropped.
    dir: PathBuf,
    /// Clients must authenticate (SASL SCRAM), after [`TestBroker::require_scram_user`].
    authentication: bool,
}

impl TestBroker {
    /// The tansu binary, or why there is none.
    pub fn binary() -> Result<PathBuf, String> {
        let path = std::env::var_os("SURVEIL_TANSU").map(PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/surveil/tansu/bin/tansu")
        });
        match path.is_file() {
            true => Ok(path),
            false => Err(format!(
                "no tansu broker at {} (scripts/test-all.sh installs it; or set SURVEIL_TANSU)",
                path.display()
            )),
        }
    }

    /// Starts a broker on a free port and waits until it listens.
    pub fn start() -> Result<TestBroker, String> {
        let address = free_address()?;
        let dir =
            std::env::temp_dir().join(format!("surveil-tansu-{}-{}", std::process::id(), address.replace(':', "-")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = spawn(&dir, &address, &address, false)?;
        let broker = TestBroker { child, plain: address.clone(), address, tls: None, dir, authentication: false };
        wait_until_listening(&broker.plain, &broker.dir)?;
        Ok(broker)
    }

    /// Starts a broker reached over TLS only: tansu listens on a loopback port of its own and
    /// advertises the port of a stunnel that accepts TLS with `certificate` and `key` (PEM
    /// files) and forwards to it.
    pub fn start_tls(certificate: &Path, key: &Path) -> Result<TestBroker, String> {
        let (plain, address) = (free_address()?, free_address()?);
        let dir =
            std::env::temp_dir().join(format!("surveil-tansu-{}-{}", std::process::id(), address.replace(':', "-")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = spawn(&dir, &plain, &address, false)?;
        // Dropped on any error below, which stops tansu.
        let mut broker = TestBroker { child, address, plain, tls: None, dir, authentication: false };
        let (address, plain, dir) = (broker.address.clone(), broker.plain.clone(), broker.dir.clone());
        let conf = dir.join("stunnel.conf");
        let text = format!(
            "foreground = yes\npid =\n[kafka]\naccept = {address}\nconnect = {plain}\ncert = {}\nkey = {}\n",
            certificate.display(),
            key.display()
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("stunnel.log")).map_err(|e| e.to_string())?;
        let tls = Command::new("stunnel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("stunnel does not start (Debian's stunnel4 package): {e}"))?;
        broker.tls = Some(tls);
        wait_until_listening(&broker.plain, &broker.dir)?;
        wait_until_listening(&broker.address, &broker.dir)?;
        Ok(broker)
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Settings for this broker with every default (and a 30 s timeout).
    pub fn settings(&self) -> KafkaConfig {
        let mut settings = KafkaConfig::new(&self.address);
        settings.timeout = Duration::from_secs(30);
        settings
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and storage.
    pub fn restart(&mut self, down_for: Duration) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down_for);
        self.child = spawn(&self.dir, &self.plain, &self.address, self.authentication)?;
        wait_until_listening(&self.plain, &self.dir)
    }

    /// Creates the SCRAM-SHA-512 user `name` with `password` (tansu's own `user create`, over
    /// the Kafka protocol), then restarts the broker requiring every client to authenticate
    /// (`sasl.mechanisms = "SCRAM-SHA-512"`).
    pub fn require_scram_user(&mut self, name: &str, password: &str) -> Result<(), String> {
        let output = Command::new(TestBroker::binary()?)
            .args(["user", "create", "--mechanism", "scram512", "--broker", &format!("tcp://{}", self.plain)])
            .args([name, password])
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| format!("tansu user create: {e}"))?;
        if !output.status.success() {
            return Err(format!("tansu user create: {}", String::from_utf8_lossy(&output.stderr)));
        }
        self.authentication = true;
        self.restart(Duration::from_millis(200))
    }

    /// Every message of `topic` from its start, in partition order: read until `expected`
    /// came and then nothing more for 2 s (so that extra messages are seen too), for at most
    /// 60 s.
    pub fn read_topic(&self, topic: &str, expected: usize) -> Result<Vec<Received>, KafkaError> {
        self.read_topic_with(&self.settings(), topic, expected)
    }

    /// [`TestBroker::read_topic`] with these client settings (TLS, say).
    pub fn read_topic_with(
        &self,
        settings: &KafkaConfig,
        topic: &str,
        expected: usize,
    ) -> Result<Vec<Received>, KafkaError> {
        let partitions = partition_count(settings, topic)?;
        let consumer: BaseConsumer = super::client_config(settings)
            .set("group.id", "surveil-test-reader")
            .create()
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            list.add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| KafkaError::Config(e.to_string()))?;
        }
        consumer.assign(&list).map_err(|e| KafkaError::Config(e.to_string()))?;
        let mut out = Vec::new();
        let started = Instant::now();
        let mut quiet = Instant::now();
        while (out.len() < expected || quiet.elapsed() < Duration::from_secs(2))
            && started.elapsed() < Duration::from_secs(60)
        {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
            quiet = Instant::now();
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            let headers = message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect())
                .unwrap_or_default();
            out.push(Received { key: text(message.key()), payload: text(message.payload()), headers });
        }
        Ok(out)
    }
}

fn free_address() -> Result<String, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

fn wait_until_listening(address: &str, dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            return Err(format!("nothing listens on {address} after 30 s: {}{}", log("tansu.log"), log("stunnel.log")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn spawn(dir: &Path, listen: &str, advertise: &str, authentication: bool) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join("tansu.log")).map_err(|e| e.to_string())?;
    Command::new(TestBroker::binary()?)
        .current_dir(dir)
        .args(["broker", "--listener-url", &format!("tcp://{listen}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertise}")])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .args(authentication.then_some("--authentication"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("tansu does not start: {e}"))
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.tls.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
