//! Local HTTPS endpoints for tests: a test certificate authority, and a regulator's filing
//! endpoint that records what it receives and answers with receipts.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A test certificate authority and a server certificate it signed for 127.0.0.1: the server's
/// TLS configuration and the authority's PEM.
pub fn test_tls() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let server_cert = server.signed_by(&server_key, &issuer).expect("server certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .expect("server config");
    (Arc::new(config), ca_cert.pem())
}

/// A test certificate authority and a server certificate for 127.0.0.1, as PEM: the
/// authority's certificate, the server's certificate and the server's private key, for a
/// server that reads them from files.
pub fn test_certificate_files() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a certificate whose issuer is its own subject for
    // self-signed.
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "surveil test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let mut server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    server.distinguished_name = rcgen::DistinguishedName::new();
    server.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let server_cert = server.signed_by(&server_key, &issuer).expect("server certificate");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

/// How the regulator answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Takes the report and answers with its receipt.
    Receipt,
    /// Answers with this status and no receipt, taking nothing.
    Status(u16),
    /// Takes the report, then says nothing for this long (past the client's timeout) before
    /// answering: the filing is made, its answer lost.
    Silence(Duration),
}

/// A request the regulator received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `Idempotency-Key`.
    pub key: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A regulator's filing endpoint over HTTPS on 127.0.0.1: it records every request, files each
/// idempotency key once (a repeat gets the first receipt) and answers request `n` (from 0) as
/// `script[n]` says (with a receipt once the script runs out).
pub struct Regulator {
    /// The port.
    pub port: u16,
    /// The test authority's PEM.
    pub ca_pem: String,
    received: Arc<Mutex<Vec<Received>>>,
    filings: Arc<Mutex<HashMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Regulator {
    /// Starts the endpoint.
    pub fn start(script: Vec<Answer>) -> Regulator {
        let (tls, ca_pem) = test_tls();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let received = Arc::new(Mutex::new(Vec::new()));
        let filings = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, filed, stopped) = (received.clone(), filings.clone(), stop.clone());
        let script = Arc::new(script);
        let thread = std::thread::spawn(move || {
            // Bounded: a test endpoint stops by itself after two minutes.
            let until = Instant::now() + Duration::from_secs(120);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (seen, filed, tls, script) = (seen.clone(), filed.clone(), tls.clone(), script.clone());
                // A connection of its own, so that a silent answer holds up no other request.
                std::thread::spawn(move || answer(stream, tls, &seen, &filed, &script));
            }
        });
        Regulator { port, ca_pem, received, filings, stop, thread: Some(thread) }
    }

    /// The filing URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/stor", self.port)
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// The reports filed: idempotency key → receipt.
    pub fn filings(&self) -> HashMap<String, String> {
        self.filings.lock().expect("filings").clone()
    }
}

impl Drop for Regulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request on `stream` and answers it as the script says.
fn answer(
    stream: std::net::TcpStream,
    tls: Arc<rustls::ServerConfig>,
    seen: &Mutex<Vec<Received>>,
    filed: &Mutex<HashMap<String, String>>,
    script: &[Answer],
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(connection) = rustls::ServerConnection::new(tls) else { return };
    let mut stream = rustls::StreamOwned::new(connection, stream);
    let Some(request) = read(&mut stream) else { return };
    let n = {
        let mut seen = seen.lock().expect("received");
        seen.push(request.clone());
        seen.len() - 1
    };
    let file = || {
        let mut filed = filed.lock().expect("filings");
        let next = format!("RCPT-{:04}", filed.len() + 1);
        filed.entry(request.key.clone().unwrap_or_default()).or_insert(next).clone()
    };
    let (status, body) = match script.get(n).copied().unwrap_or(Answer::Receipt) {
        Answer::Receipt => (201, format!(r#"{{"receipt":"{}"}}"#, file())),
        Answer::Status(status) => (status, r#"{"error":"unavailable"}"#.to_string()),
        Answer::Silence(pause) => {
            let receipt = file();
            std::thread::sleep(pause);
            (201, format!(r#"{{"receipt":"{receipt}"}}"#))
        }
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// Reads one HTTP request.
fn read(stream: impl Read) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut headers = HashMap::new();
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        key: headers.get("idempotency-key").cloned(),
        content_type: headers.get("content-type").cloned(),
        authorization: headers.get("authorization").cloned(),
        body,
    })
}
