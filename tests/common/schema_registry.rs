//! A schema registry on 127.0.0.1 speaking the part of the Confluent REST API a producer and
//! a consumer of Avro messages use: `POST /subjects/{subject}/versions` registers a schema
//! (the same text gets the same id) and `GET /schemas/ids/{id}` returns it, or 404 with error
//! code 40403. Every lookup is counted, to check that readers cache what they fetched.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Schema text by id (ids from 1).
    schemas: Vec<String>,
    /// `GET /schemas/ids/{id}` requests by id.
    lookups: BTreeMap<u32, u32>,
}

/// The registry; stops when dropped.
pub struct SchemaRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchemaRegistry {
    /// Starts the registry on a free port of 127.0.0.1.
    pub fn start() -> SchemaRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: a test registry stops by itself after five minutes.
            let until = Instant::now() + Duration::from_secs(300);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &shared),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SchemaRegistry { port, state, stop, thread: Some(thread) }
    }

    /// The registry's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers `schema` (as a producer with its own schema would) and returns its id.
    pub fn register(&self, schema: &str) -> u32 {
        register(&mut self.state.lock().expect("state"), schema)
    }

    /// How often each id was looked up.
    pub fn lookups(&self) -> BTreeMap<u32, u32> {
        self.state.lock().expect("state").lookups.clone()
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn register(state: &mut State, schema: &str) -> u32 {
    let position = match state.schemas.iter().position(|s| s == schema) {
        Some(position) => position,
        None => {
            state.schemas.push(schema.to_string());
            state.schemas.len() - 1
        }
    };
    position as u32 + 1
}

/// Reads one request and answers it.
fn answer(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut state = state.lock().expect("state");
    let (status, answer) = match (method, path.strip_prefix("/schemas/ids/").and_then(|id| id.parse::<u32>().ok())) {
        ("GET", Some(id)) => {
            *state.lookups.entry(id).or_default() += 1;
            match state.schemas.get(id.wrapping_sub(1) as usize) {
                Some(schema) => (200, serde_json::json!({ "schema": schema })),
                None => (404, serde_json::json!({ "error_code": 40403, "message": "Schema not found" })),
            }
        }
        ("POST", None) if path.starts_with("/subjects/") && path.ends_with("/versions") => {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match request["schema"].as_str() {
                Some(schema) => (200, serde_json::json!({ "id": register(&mut state, schema) })),
                None => (422, serde_json::json!({ "error_code": 42201, "message": "Invalid schema" })),
            }
        }
        _ => (404, serde_json::json!({ "error_code": 404, "message": "HTTP 404 Not Found" })),
    };
    drop(state);
    let text = answer.to_string();
    let mut writer = writer;
    let _ = write!(
        writer,
        "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = writer.flush();
}
