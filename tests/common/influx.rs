//! An InfluxDB 1.6 of a test's own (Debian's `influxdb` package, which `scripts/test-all.sh`
//! installs), on loopback ports with its data in a temporary folder, with a database named
//! `surveil`; stopped when dropped. Included by path by the tests that need one.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// An `influxd` of its own, on loopback ports, stopped when dropped.
pub struct Influx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Influx {
    pub fn start() -> Influx {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, rpc) = (free_port(), free_port());
        let root = dir.path().display().to_string();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{root}/meta\"\n\
             [data]\n  dir = \"{root}/data\"\n  wal-dir = \"{root}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
        );
        let path = dir.path().join("influxdb.conf");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("influxd.log")).expect("log");
        let child =
            Command::new("influxd").arg("-config").arg(&path).stdout(Stdio::null()).stderr(log).spawn().unwrap_or_else(
                |e| panic!("cannot start influxd ({e}): install Debian's influxdb package (scripts/test-all.sh does)"),
            );
        let influx = Influx { child, port: http, _dir: dir };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq::get(&format!("{}/ping", influx.url())).call().is_ok_and(|r| r.status().as_u16() == 204) {
                break;
            }
            assert!(Instant::now() < until, "influxd did not answer /ping within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        influx.query("CREATE DATABASE surveil");
        influx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn query(&self, q: &str) -> Value {
        self.query_in("surveil", q)
    }

    /// Answers `q` in `database`.
    pub fn query_in(&self, database: &str, q: &str) -> Value {
        let mut response = ureq::post(&format!("{}/query", self.url()))
            .query("db", database)
            .query("q", q)
            .send_empty()
            .expect("query");
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("JSON")
    }

    /// The single number a `SELECT count(...)` answers, 0 for no series.
    pub fn count(&self, q: &str) -> u64 {
        self.query(q)["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
