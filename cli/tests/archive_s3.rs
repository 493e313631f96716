//! The Parquet archive on S3-compatible object storage, through the command line: moto's S3
//! server (from PyPI; `scripts/test-all.sh` installs it) on 127.0.0.1 over TLS with a test
//! certificate authority. A run archives there, a replay reads it back into the same alerts;
//! an untrusted certificate and missing credentials are clear errors.

#[path = "../../tests/common/https.rs"]
mod https;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn surveil() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_surveil"));
    command.env("AWS_ACCESS_KEY_ID", "surveil-test").env("AWS_SECRET_ACCESS_KEY", "surveil-test-secret");
    command
}

/// moto's S3 server on a loopback port, stopped when dropped.
struct S3Server {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl S3Server {
    fn start(dir: &Path) -> S3Server {
        let (ca, cert, key) = https::test_certificate_files();
        let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&ca_path, ca).expect("ca");
        std::fs::write(&cert_path, cert).expect("cert");
        std::fs::write(&key_path, key).expect("key");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let server = std::env::var("SURVEIL_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let log = std::fs::File::create(dir.join("moto.log")).expect("log");
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&cert_path)
            .arg("-k")
            .arg(&key_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{server}: {e} (pip install 'moto[server]'; scripts/test-all.sh does)"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "moto_server did not start: see {}", dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server { child, port, ca: ca_path }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    fn create_bucket(&self, name: &str) {
        let script = "import ssl, sys, urllib.request\n\
                      context = ssl.create_default_context(cafile=sys.argv[2])\n\
                      urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='PUT'), context=context).read()\n";
        let status = Command::new("python3")
            .args(["-c", script, &format!("{}/{name}", self.endpoint())])
            .arg(&self.ca)
            .status()
            .expect("python3");
        assert!(status.success(), "bucket {name} not created");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, name: &str, day: &Path, archive: &str) -> PathBuf {
    let base = std::fs::read_to_string(day.join("surveil.toml")).expect("config");
    // The generated configuration names its reference files relative to its own folder.
    let path = day.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{base}\n{archive}\n")).expect("write");
    let _ = dir;
    path
}

/// `surveil run --config CONFIG --out OUT -q [EXTRA...] INPUT`, in `command`'s environment.
fn run(
    mut command: Command,
    config: &Path,
    out: &Path,
    extra: &[&str],
    input: impl AsRef<std::ffi::OsStr>,
) -> std::process::Output {
    command.arg("run").arg("--config").arg(config).arg("--out").arg(out).arg("-q").args(extra).arg(input);
    command.output().expect("surveil run")
}

fn summary_of(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json")
}

fn alert_ids(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).expect("alerts");
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_run_archives_to_s3_over_tls_and_a_replay_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    server.create_bucket("surveil");
    let day = dir.path().join("day");
    let status = surveil()
        .args(["generate", "--events", "30000", "--instruments", "5", "--out"])
        .arg(&day)
        .stdout(Stdio::null())
        .status()
        .expect("generate");
    assert!(status.success());
    let settings = |url: &str, ca: Option<&Path>| {
        let ca = ca.map(|p| format!("ca_file = {:?}\n", p.display().to_string())).unwrap_or_default();
        format!(
            "[archive]\nurl = {url:?}\nendpoint = {:?}\n{ca}max_attempts = 2\nbackoff = \"50ms\"\ntimeout = \"20s\"\nrow_group_rows = 2000\n",
            server.endpoint()
        )
    };
    let archived = config(dir.path(), "archived", &day, &settings("s3://surveil/runs", Some(&server.ca)));
    let out = dir.path().join("out");
    let first = run(surveil(), &archived, &out, &[], day.join("events.csv"));
    assert!(first.status.success(), "run: {}", String::from_utf8_lossy(&first.stderr));
    let summary = summary_of(&out);
    let archive = &summary["archive"];
    assert_eq!(archive["url"], "s3://surveil/runs");
    assert!(archive["files"].as_u64().unwrap_or_default() >= 5, "{archive}");
    assert_eq!(archive["rows"]["events"], summary["events"]);
    assert!(archive["error"].is_null(), "{archive}");

    // The replay reads the run's archive (and archives itself under another prefix).
    let replaying = config(dir.path(), "replaying", &day, &settings("s3://surveil/replays", Some(&server.ca)));
    let replayed = dir.path().join("replayed");
    let replay = run(surveil(), &replaying, &replayed, &["-w", "2"], "s3://surveil/runs");
    assert!(replay.status.success(), "replay: {}", String::from_utf8_lossy(&replay.stderr));
    assert!(!alert_ids(&out).is_empty());
    assert_eq!(alert_ids(&replayed), alert_ids(&out));
    let replay_summary = summary_of(&replayed);
    assert_eq!(replay_summary["events"], summary["events"]);
    assert_eq!(replay_summary["late_events"], summary["late_events"]);
    assert_eq!(replay_summary["archive"]["rows"]["events"], summary["events"], "the replay archived what it read");

    // Names that are escaped in their partition (a slash, a space) name the same objects when
    // written and when read back.
    let fx = dir.path().join("fx.csv");
    let mut csv = String::from("event_time,kind,instrument,order_id,account,side,price,quantity\n");
    for (i, pair) in ["EUR/USD", "ES Z4", "EUR/USD"].iter().enumerate() {
        csv.push_str(&format!("{},new,{pair},O{i},ACC1,buy,1.25,1000\n", 1_709_280_000_000_000_000u64 + i as u64));
    }
    std::fs::write(&fx, csv).expect("fx");
    let fx_config = dir.path().join("fx.toml");
    std::fs::write(&fx_config, settings("s3://surveil/fx", Some(&server.ca))).expect("config");
    let fx_run = run(surveil(), &fx_config, &dir.path().join("fx"), &[], &fx);
    assert!(fx_run.status.success(), "fx run: {}", String::from_utf8_lossy(&fx_run.stderr));
    let fx_replay_config = dir.path().join("fx-replay.toml");
    std::fs::write(&fx_replay_config, settings("s3://surveil/fx-replays", Some(&server.ca))).expect("config");
    let fx_out = dir.path().join("fx-replayed");
    let fx_replay = run(surveil(), &fx_replay_config, &fx_out, &[], "s3://surveil/fx");
    assert!(fx_replay.status.success(), "fx replay: {}", String::from_utf8_lossy(&fx_replay.stderr));
    let fx_summary = summary_of(&fx_out);
    assert_eq!(fx_summary["events"], 3, "{fx_summary}");
    assert_eq!(fx_summary["dead_letters"], 0, "{fx_summary}");

    // The system's authorities do not know the test authority: a clear error, after the
    // run's other outputs.
    let untrusted = config(dir.path(), "untrusted", &day, &settings("s3://surveil/untrusted", None));
    let refused = run(surveil(), &untrusted, &dir.path().join("untrusted"), &[], day.join("events.csv"));
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(message.contains("archive is incomplete") && message.contains("certificate"), "{message}");

    // Without credentials the run stops before it starts, instead of asking a cloud metadata
    // service off this machine.
    let mut anonymous = surveil();
    for variable in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE"] {
        anonymous.env_remove(variable);
    }
    let anonymous = run(anonymous, &archived, &dir.path().join("anonymous"), &[], day.join("events.csv"));
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("no credentials"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
}
