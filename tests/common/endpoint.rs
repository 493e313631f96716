//! A local HTTP(S) endpoint for webhook tests (127.0.0.1) that records every request and
//! answers as told. Included by path by the tests that need one.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A recording endpoint: every request's body and the status it was answered with.
pub struct Endpoint {
    pub port: u16,
    requests: Arc<Mutex<Vec<(Value, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    /// Serves on `listener`, answering request `n` (from 0) with `status(n)`.
    pub fn serve(listener: TcpListener, status: impl Fn(usize) -> u16 + Send + 'static) -> Endpoint {
        Endpoint::serve_with(listener, None, status)
    }

    /// [`Endpoint::serve`], over TLS when `tls` is given.
    pub fn serve_with(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        status: impl Fn(usize) -> u16 + Send + 'static,
    ) -> Endpoint {
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: a test endpoint stops by itself after five minutes.
            let until = Instant::now() + Duration::from_secs(300);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let n = seen.lock().expect("requests").len();
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let body = match &tls {
                            Some(config) => rustls::ServerConnection::new(config.clone())
                                .ok()
                                .and_then(|c| read_request(rustls::StreamOwned::new(c, stream), status(n))),
                            None => read_request(stream, status(n)),
                        };
                        if let Some(body) = body {
                            seen.lock().expect("requests").push(body);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Endpoint { port, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2/enqueue", self.port)
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.requests.lock().expect("requests").clear();
    }

    pub fn requests(&self) -> Vec<(Value, u16)> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP request and answers it with `status`; returns its JSON body.
pub fn read_request(stream: impl Read + Write, status: u16) -> Option<(Value, u16)> {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let answer = if status == 202 {
        r#"{"status":"success","message":"Event processed"}"#
    } else {
        r#"{"status":"unavailable"}"#
    };
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )
    .ok()?;
    stream.flush().ok()?;
    Some((serde_json::from_slice(&body).ok()?, status))
}
