//! Object storage: `s3://bucket/prefix` as well as local paths (feature
//! `s3`), through the `object_store` crate.
//!
//! [`Location::parse`] tells an S3 location from a local path. A [`Bucket`]
//! is one bucket and prefix with a blocking API (the pipeline is
//! synchronous; a small tokio runtime lives inside): [`Bucket::list`],
//! [`Bucket::get`], [`Bucket::exists`], [`Bucket::put_complete`] and
//! [`Bucket::put_reader`], [`Bucket::delete`]. Keys are relative to the
//! prefix, `/`-separated.
//!
//! The commit rule, S3's counterpart of [`crate::atomic`]: an output object
//! appears only once complete. Up to [`MULTIPART_THRESHOLD`] bytes it is one
//! PUT (S3 stores a PUT whole or not at all); above, a multipart upload in
//! parts of [`PART_SIZE`], which S3 makes visible only at its completion,
//! and which is aborted on any error (reading the bytes or sending a part),
//! so neither a partial object nor a dangling upload is left behind.
//!
//! Credentials, region and endpoint come from the environment
//! (`AmazonS3Builder::from_env`: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server,
//! `AWS_ALLOW_HTTP=true` for plain HTTP). Plain HTTP is also allowed
//! without it when the endpoint is on loopback (127.0.0.1, `::1`,
//! `localhost`): the bytes never leave the machine.
//!
//! Object keys are file names and can carry PHI: no error here names a key,
//! a bucket or a prefix, and nothing is logged (errors say which operation
//! failed and what kind of failure, as the rest of veil-io does).

use std::io::Read;
use std::path::PathBuf;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Objects up to this size are written with one PUT; larger ones with a
/// multipart upload.
pub const MULTIPART_THRESHOLD: usize = 8 << 20;

/// The part size of a multipart upload (S3's minimum is 5 MiB, but for the
/// last part).
pub const PART_SIZE: usize = 8 << 20;

/// S3's smallest part but the last.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Where inputs are read or outputs written: a local path or an S3 bucket
/// and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local file or folder.
    Local(PathBuf),
    /// `s3://bucket/prefix`: the prefix without leading or trailing `/`
    /// (empty for the whole bucket).
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket` or `s3://bucket/prefix` is S3; another `scheme://` is
    /// refused (only S3 is supported); anything else is a local path.
    /// Errors name the part at fault, never the value.
    pub fn parse(s: &str) -> Result<Location, ObjectError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        let is_scheme = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Ok(Location::Local(PathBuf::from(s)));
        }
        if !scheme.eq_ignore_ascii_case("s3") {
            return Err(ObjectError::Location {
                field: "scheme",
                reason: "only s3:// is supported",
            });
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || (!prefix.is_empty() && prefix.split('/').any(str::is_empty))
        {
            return Err(ObjectError::Location {
                field: "prefix",
                reason: "has an empty, `.` or `..` segment",
            });
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// [`Location::parse`] for a command-line argument: a path that is not
    /// UTF-8 is local.
    pub fn from_os(s: &std::ffi::OsStr) -> Result<Location, ObjectError> {
        match s.to_str() {
            Some(s) => Location::parse(s),
            None => Ok(Location::Local(PathBuf::from(s))),
        }
    }
}

/// S3 bucket naming rules (3 to 63 lower-case letters, digits, `.` and `-`,
/// starting and ending with a letter or digit).
fn check_bucket(b: &str) -> Result<(), ObjectError> {
    let bad = |reason| {
        Err(ObjectError::Location {
            field: "bucket",
            reason,
        })
    };
    if b.is_empty() {
        return bad("is empty");
    }
    if !(3..=63).contains(&b.len()) {
        return bad("must be 3 to 63 characters");
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return bad("may hold only lower-case letters, digits, `.` and `-`");
    }
    let ends_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(b.bytes().next()) || !ends_ok(b.bytes().last()) {
        return bad("must start and end with a letter or digit");
    }
    Ok(())
}

/// Why an object operation failed: the operation and the kind of failure,
/// never a key, bucket, prefix or URL (those can carry PHI).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object location: the {field} {reason}")]
    Location {
        field: &'static str,
        reason: &'static str,
    },
    #[error("object store: {op}: no such object")]
    NotFound { op: &'static str },
    #[error("object store: {op} failed: {kind}")]
    Store {
        op: &'static str,
        kind: &'static str,
    },
    #[error("object store: reading the bytes to upload failed: {0}")]
    Read(std::io::ErrorKind),
    #[error("object store: the runtime could not start: {0}")]
    Runtime(std::io::ErrorKind),
    /// A local input or output (`veil_io::place`): the operation and the
    /// kind of failure.
    #[error("local files: {op} failed: {kind:?}")]
    Io {
        op: &'static str,
        kind: std::io::ErrorKind,
    },
}

fn store_error(op: &'static str, e: object_store::Error) -> ObjectError {
    use object_store::Error as E;
    let kind = match e {
        E::NotFound { .. } => return ObjectError::NotFound { op },
        E::InvalidPath { .. } => {
            return ObjectError::Location {
                field: "key",
                reason: "is not a valid object key",
            }
        }
        E::PermissionDenied { .. } => "permission denied",
        E::Unauthenticated { .. } => {
            "not authenticated (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        }
        E::AlreadyExists { .. } => "the object already exists",
        E::Precondition { .. } => "a precondition failed",
        E::NotSupported { .. } | E::NotImplemented { .. } => "not supported by the store",
        E::UnknownConfigurationKey { .. } => "unknown configuration key",
        E::JoinError { .. } => "a task failed",
        // Generic carries the request's URL (the key) in its source: not
        // shown
        _ => "request failed (network, endpoint, region or server error)",
    };
    ObjectError::Store { op, kind }
}

/// Options that override the environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The endpoint URL (an S3-compatible server); `AWS_ENDPOINT_URL` when
    /// `None`.
    pub endpoint: Option<String>,
}

/// One S3 bucket and prefix, with a blocking API. `Sync`: one `Bucket` is
/// shared by every thread that reads or writes there (its connections are
/// pooled).
pub struct Bucket {
    rt: tokio::runtime::Runtime,
    store: AmazonS3,
    /// The prefix, without leading or trailing `/` (empty: the whole bucket).
    prefix: String,
    threshold: usize,
    part_size: usize,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // no bucket or prefix: they can be named after a study
        f.debug_struct("Bucket")
            .field("threshold", &self.threshold)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

fn loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Bucket {
    /// The bucket and prefix of an S3 [`Location`], configured from the
    /// environment and `opts`.
    pub fn open(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Bucket, ObjectError> {
        check_bucket(bucket)?;
        // reqwest's rustls has no bundled provider (no aws-lc-rs in the
        // build): ring, process-wide, as veil-dimse and veil-store use
        // (rustls 0.23.48 deprecates it for lacking post-quantum key
        // exchange; switching all three together is the upgrade path). An
        // error means a provider is installed already.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e);
        }
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok());
        if endpoint.as_deref().is_some_and(loopback_http) {
            b = b.with_allow_http(true);
        }
        let store = b.build().map_err(|e| store_error("configure", e))?;
        // two workers drive the connections; callers on several threads
        // (the pipeline's) each block on their own request
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("veil-s3")
            .enable_all()
            .build()
            .map_err(|e| ObjectError::Runtime(e.kind()))?;
        Ok(Bucket {
            rt,
            store,
            prefix: prefix.trim_matches('/').to_string(),
            threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        })
    }

    /// [`Bucket::open`] for a [`Location::S3`]; `None` for a local one.
    pub fn for_location(loc: &Location, opts: &S3Options) -> Option<Result<Bucket, ObjectError>> {
        match loc {
            Location::Local(_) => None,
            Location::S3 { bucket, prefix } => Some(Bucket::open(bucket, prefix, opts)),
        }
    }

    /// Sets the single-PUT threshold and the part size (tests, tuning).
    /// A part size under S3's 5 MiB minimum works only on servers that
    /// do not enforce it.
    pub fn with_part_size(mut self, threshold: usize, part_size: usize) -> Bucket {
        self.threshold = threshold;
        self.part_size = part_size.max(1);
        self
    }

    fn path(&self, key: &str) -> Result<ObjectPath, ObjectError> {
        let key = key.trim_start_matches('/');
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        if key.is_empty() {
            return Err(ObjectError::Location {
                field: "key",
                reason: "is empty",
            });
        }
        ObjectPath::parse(full).map_err(|_| ObjectError::Location {
            field: "key",
            reason: "is not a valid object key",
        })
    }

    /// Every object below the prefix: its key relative to the prefix and
    /// its size, sorted by key (as the local walk is).
    pub fn list(&self) -> Result<Vec<(String, u64)>, ObjectError> {
        let prefix = if self.prefix.is_empty() {
            None
        } else {
            Some(
                ObjectPath::parse(&self.prefix).map_err(|_| ObjectError::Location {
                    field: "prefix",
                    reason: "is not a valid object key prefix",
                })?,
            )
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = self.rt.block_on(async {
            let mut s = self.store.list(prefix.as_ref());
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| store_error("list", e))?;
                let k: &str = m.location.as_ref();
                out.push((k.get(strip..).unwrap_or("").to_string(), m.size));
            }
            Ok::<_, ObjectError>(out)
        })?;
        out.sort();
        Ok(out)
    }

    /// The object's bytes.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        let p = self.path(key)?;
        self.rt.block_on(async {
            let r = self
                .store
                .get(&p)
                .await
                .map_err(|e| store_error("get", e))?;
            let b = r.bytes().await.map_err(|e| store_error("get", e))?;
            Ok(b.to_vec())
        })
    }

    /// Whether the object exists (a HEAD request): a rerun skips finished
    /// outputs with it.
    pub fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        let p = self.path(key)?;
        match self.rt.block_on(self.store.head(&p)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("head", e)),
        }
    }

    /// Deletes the object (no error if there is none).
    pub fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let p = self.path(key)?;
        match self.rt.block_on(self.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", e)),
        }
    }

    /// Writes the object so that it appears only when complete: one PUT up
    /// to the threshold, a multipart upload above (aborted on error).
    pub fn put_complete(&self, key: &str, bytes: &[u8]) -> Result<(), ObjectError> {
        if bytes.len() <= self.threshold {
            let p = self.path(key)?;
            let payload = PutPayload::from(bytes.to_vec());
            return self
                .rt
                .block_on(self.store.put(&p, payload))
                .map(|_| ())
                .map_err(|e| store_error("put", e));
        }
        self.put_reader(key, bytes)
    }

    /// [`Bucket::put_complete`] from a reader, read a part at a time (at
    /// most a part and the threshold in memory). If reading fails the
    /// multipart upload is aborted: no object and no pending upload remain.
    pub fn put_reader(&self, key: &str, mut r: impl Read) -> Result<(), ObjectError> {
        let p = self.path(key)?;
        // enough to tell a single PUT (EOF within threshold + 1 bytes)
        let first = read_up_to(&mut r, self.threshold.max(self.part_size) + 1)?;
        if first.len() <= self.threshold {
            let payload = PutPayload::from(first);
            return self
                .rt
                .block_on(self.store.put(&p, payload))
                .map(|_| ())
                .map_err(|e| store_error("put", e));
        }
        self.rt.block_on(async {
            let mut up = self
                .store
                .put_multipart(&p)
                .await
                .map_err(|e| store_error("multipart start", e))?;
            let res = async {
                let mut pending = first;
                loop {
                    // send whole parts; keep the tail to join the next read
                    while pending.len() >= self.part_size {
                        let rest = pending.split_off(self.part_size);
                        let part = std::mem::replace(&mut pending, rest);
                        up.put_part(PutPayload::from(part))
                            .await
                            .map_err(|e| store_error("multipart part", e))?;
                    }
                    let more = read_up_to(&mut r, self.part_size)?;
                    if more.is_empty() {
                        break;
                    }
                    pending.extend_from_slice(&more);
                }
                if !pending.is_empty() {
                    up.put_part(PutPayload::from(pending))
                        .await
                        .map_err(|e| store_error("multipart part", e))?;
                }
                up.complete()
                    .await
                    .map_err(|e| store_error("multipart complete", e))
            }
            .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) => {
                    // best effort: the error that matters is the first one
                    let _ = up.abort().await;
                    Err(e)
                }
            }
        })
    }
}

/// Up to `n` bytes, fewer only at EOF.
fn read_up_to(r: &mut impl Read, n: usize) -> Result<Vec<u8>, ObjectError> {
    let mut buf = Vec::new();
    r.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| ObjectError::Read(e.kind()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(b: &str, p: &str) -> Location {
        Location::S3 {
            bucket: b.into(),
            prefix: p.into(),
        }
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://my-bucket").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            Location::parse("s3://my-bucket/").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            Location::parse("s3://my.bucket/a/b/").unwrap(),
            s3("my.bucket", "a/b")
        );
        assert_eq!(Location::parse("S3://abc/x").unwrap(), s3("abc", "x"));
        assert_eq!(
            Location::parse("/data/in").unwrap(),
            Location::Local("/data/in".into())
        );
        assert_eq!(
            Location::parse("rel/s3://x").unwrap(),
            Location::Local("rel/s3://x".into())
        );
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        for (bad, field) in [
            ("gs://bucket/x", "scheme"),
            ("s3://", "bucket"),
            ("s3://Smith_John/x", "bucket"),
            ("s3://ab", "bucket"),
            ("s3://-abc", "bucket"),
            ("s3://abc/x//y", "prefix"),
            ("s3://abc/x/../y", "prefix"),
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert!(
                matches!(e, ObjectError::Location { field: f, .. } if f == field),
                "{bad}: {e:?}"
            );
            let msg = e.to_string();
            assert!(!msg.contains("Smith") && !msg.contains("abc"), "{msg}");
        }
    }

    #[test]
    fn loopback_endpoints_may_be_http() {
        assert!(loopback_http("http://127.0.0.1:8333"));
        assert!(loopback_http("http://localhost:9000/"));
        assert!(loopback_http("http://[::1]:9000"));
        assert!(!loopback_http("http://s3.example.org"));
        assert!(!loopback_http("http://127.0.0.1.example.org"));
        assert!(!loopback_http("https://127.0.0.1:8333"));
    }
}
