//! Where archive files go: a folder of the local file system, or a bucket of S3-compatible
//! object storage (AWS S3, MinIO, Ceph...) through the `object_store` crate.
//!
//! A file is written whole to a staging file first and only then published under its name: a
//! local file by rename (after fsync, then the folder's fsync), an object by one upload (a
//! multipart upload above 8 MiB). A reader therefore never sees half a file, and a run that
//! dies leaves staging files, never a truncated Parquet file under an archive name.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::ArchiveConfig;

/// What went wrong with the archive's storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A local file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Object storage refused or could not be reached.
    #[error("{url}: {message}")]
    Object {
        /// The object's URL.
        url: String,
        /// The error, with its causes.
        message: String,
    },
    /// The settings cannot work.
    #[error("archive: {0}")]
    Settings(String),
}

/// A place for archive files.
pub enum ArchiveStore {
    /// A folder.
    Local(PathBuf),
    /// A bucket and a prefix in it.
    Object {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// `s3://bucket/prefix`, for messages.
        url: String,
        /// The prefix of every object (may be empty).
        prefix: String,
        /// The runtime the store's requests run on.
        runtime: tokio::runtime::Runtime,
    },
}

impl std::fmt::Debug for ArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Everything `error` says, with its causes: object storage wraps the reason (a refused
/// certificate, a 403) a few levels down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

impl ArchiveStore {
    /// The store `config.url` names: `s3://bucket[/prefix]` or a folder.
    pub fn open(config: &ArchiveConfig) -> Result<ArchiveStore, StoreError> {
        let Some(rest) = config.url.strip_prefix("s3://") else {
            return Ok(ArchiveStore::Local(PathBuf::from(&config.url)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Settings(format!("{}: no bucket", config.url)));
        }
        // Without credentials in the environment the client would ask the cloud's instance
        // metadata service, an address off this machine: say what is missing instead.
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let keys = set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY");
        let web_identity = set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN");
        if !keys && !web_identity {
            return Err(StoreError::Settings(format!(
                "{}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_WEB_IDENTITY_TOKEN_FILE \
                 and AWS_ROLE_ARN)",
                config.url
            )));
        }
        // The TLS stack's cryptography: the same ring provider the other HTTPS clients use.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = object_store::ClientOptions::new().with_timeout(config.timeout);
        if let Some(endpoint) = &config.endpoint {
            if !crate::config::encrypted_or_loopback(endpoint) {
                return Err(StoreError::Settings(format!(
                    "endpoint {endpoint:?}: trading data leaves the machine only encrypted (https://); plain http:// \
                     is accepted on the loopback interface only"
                )));
            }
            options = options.with_allow_http(endpoint.to_ascii_lowercase().starts_with("http://"));
        }
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|source| StoreError::Io { path: ca.clone(), source })?;
            let certificates = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                StoreError::Settings(format!("archive.ca_file {}: not PEM certificates: {}", ca.display(), chain(&e)))
            })?;
            if certificates.is_empty() {
                return Err(StoreError::Settings(format!("archive.ca_file {}: no certificate in it", ca.display())));
            }
            options = options.with_no_system_certificates(true);
            for certificate in certificates {
                options = options.with_root_certificate(certificate);
            }
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&config.region)
            .with_client_options(options)
            .with_retry(object_store::RetryConfig {
                max_retries: config.max_attempts.saturating_sub(1) as usize,
                retry_timeout: config.timeout.saturating_mul(config.max_attempts.max(1)),
                backoff: object_store::BackoffConfig {
                    init_backoff: config.backoff,
                    max_backoff: std::time::Duration::from_secs(30),
                    base: 2.0,
                },
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| StoreError::Settings(chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Settings(format!("cannot start the object-storage client: {e}")))?;
        Ok(ArchiveStore::Object {
            store: Arc::new(store),
            url: config.url.trim_end_matches('/').to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            runtime,
        })
    }

    /// The store, for messages.
    pub fn describe(&self) -> String {
        match self {
            ArchiveStore::Local(dir) => dir.display().to_string(),
            ArchiveStore::Object { url, .. } => url.clone(),
        }
    }

    /// The object of `key`. Keys are already escaped (`%2F` in a partition value): parsed as
    /// they are, not escaped again, so the object is named as the folder would be.
    fn object_path(url: &str, prefix: &str, key: &str) -> Result<ObjectPath, StoreError> {
        let full = if prefix.is_empty() { key.to_string() } else { format!("{prefix}/{key}") };
        ObjectPath::parse(&full).map_err(|e| StoreError::Object { url: format!("{url}/{key}"), message: chain(&e) })
    }

    /// Where the staging file of `key` goes: beside its final place for a folder (so the
    /// rename stays on one file system), in `staging` for object storage.
    pub fn staging_path(&self, key: &str, staging: &Path) -> PathBuf {
        match self {
            ArchiveStore::Local(dir) => {
                let path = dir.join(key);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                path.with_file_name(format!(".{name}.partial"))
            }
            ArchiveStore::Object { .. } => staging.join(key.replace('/', "%2F") + ".partial"),
        }
    }

    /// Publishes the finished staging file `file` as `key`.
    pub fn publish(&self, file: &Path, key: &str) -> Result<(), StoreError> {
        match self {
            ArchiveStore::Local(dir) => {
                let target = dir.join(key);
                let io = |source| StoreError::Io { path: target.clone(), source };
                std::fs::File::open(file).and_then(|f| f.sync_all()).map_err(io)?;
                std::fs::rename(file, &target).map_err(io)?;
                if let Some(parent) = target.parent() {
                    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io)?;
                }
                Ok(())
            }
            ArchiveStore::Object { store, url, prefix, runtime } => {
                let path = ArchiveStore::object_path(url, prefix, key)?;
                let failed = |message: String| StoreError::Object { url: format!("{url}/{key}"), message };
                let mut reader =
                    std::fs::File::open(file).map_err(|source| StoreError::Io { path: file.to_path_buf(), source })?;
                let size = reader.metadata().map(|m| m.len()).unwrap_or(0);
                const PART: usize = 8 << 20;
                runtime.block_on(async {
                    if size <= PART as u64 {
                        let mut bytes = Vec::with_capacity(size as usize);
                        reader
                            .read_to_end(&mut bytes)
                            .map_err(|source| StoreError::Io { path: file.to_path_buf(), source })?;
                        store.put(&path, bytes.into()).await.map_err(|e| failed(chain(&e)))?;
                        return Ok(());
                    }
                    let upload = store.put_multipart(&path).await.map_err(|e| failed(chain(&e)))?;
                    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
                    let mut chunk = vec![0u8; PART];
                    let sent: Result<(), StoreError> = async {
                        loop {
                            let n = reader
                                .read(&mut chunk)
                                .map_err(|source| StoreError::Io { path: file.to_path_buf(), source })?;
                            if n == 0 {
                                return Ok(());
                            }
                            writer.wait_for_capacity(4).await.map_err(|e| failed(chain(&e)))?;
                            writer.write(&chunk[..n]);
                        }
                    }
                    .await;
                    match sent {
                        // The parts already stored are removed rather than left to be billed.
                        Err(error) => {
                            let _ = writer.abort().await;
                            Err(error)
                        }
                        Ok(()) => writer.finish().await.map(|_| ()).map_err(|e| failed(chain(&e))),
                    }
                })?;
                let _ = std::fs::remove_file(file);
                Ok(())
            }
        }
    }

    /// The keys of every file under `table/`, sorted.
    pub fn list(&self, table: &str) -> Result<Vec<String>, StoreError> {
        match self {
            ArchiveStore::Local(dir) => {
                let mut keys = Vec::new();
                let root = dir.join(table);
                if !root.exists() {
                    return Ok(keys);
                }
                let mut stack = vec![root];
                while let Some(folder) = stack.pop() {
                    let io = |source| StoreError::Io { path: folder.clone(), source };
                    for entry in std::fs::read_dir(&folder).map_err(io)? {
                        let entry = entry.map_err(io)?;
                        let path = entry.path();
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if entry.file_type().map_err(io)?.is_dir() {
                            stack.push(path);
                        } else if name.ends_with(".parquet") && !name.starts_with('.') {
                            let relative = path.strip_prefix(dir).unwrap_or(&path);
                            keys.push(
                                relative
                                    .components()
                                    .map(|c| c.as_os_str().to_string_lossy())
                                    .collect::<Vec<_>>()
                                    .join("/"),
                            );
                        }
                    }
                }
                keys.sort();
                Ok(keys)
            }
            ArchiveStore::Object { store, url, prefix, runtime } => {
                use futures_util::TryStreamExt;
                let root = ArchiveStore::object_path(url, prefix, table)?;
                let listed: Vec<object_store::ObjectMeta> =
                    runtime.block_on(store.list(Some(&root)).try_collect()).map_err(|e: object_store::Error| {
                        StoreError::Object { url: format!("{url}/{table}"), message: chain(&e) }
                    })?;
                let strip = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                let mut keys: Vec<String> = listed
                    .into_iter()
                    .map(|meta| meta.location.to_string())
                    .filter(|key| key.ends_with(".parquet"))
                    .map(|key| key.strip_prefix(&strip).map(str::to_string).unwrap_or(key))
                    .collect();
                keys.sort();
                Ok(keys)
            }
        }
    }

    /// Removes the file `key`.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            ArchiveStore::Local(dir) => {
                let path = dir.join(key);
                std::fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })
            }
            ArchiveStore::Object { store, url, prefix, runtime } => {
                let path = ArchiveStore::object_path(url, prefix, key)?;
                runtime
                    .block_on(store.delete(&path))
                    .map_err(|e| StoreError::Object { url: format!("{url}/{key}"), message: chain(&e) })
            }
        }
    }

    /// The bytes of the file `key`.
    pub fn read(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            ArchiveStore::Local(dir) => {
                let path = dir.join(key);
                std::fs::read(&path).map_err(|source| StoreError::Io { path, source })
            }
            ArchiveStore::Object { store, url, prefix, runtime } => {
                let path = ArchiveStore::object_path(url, prefix, key)?;
                let failed =
                    |e: object_store::Error| StoreError::Object { url: format!("{url}/{key}"), message: chain(&e) };
                runtime.block_on(async {
                    let got = store.get(&path).await.map_err(failed)?;
                    let bytes = got.bytes().await.map_err(failed)?;
                    Ok(bytes.to_vec())
                })
            }
        }
    }
}
