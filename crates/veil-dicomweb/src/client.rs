//! STOW-RS out: the delivery side for `dicomweb+http(s)://host/path`
//! destinations. One request carries a batch of instances as
//! multipart/related; success means the peer's response references every
//! one of them. ureq is synchronous, like the gateway's delivery workers,
//! and uses the workspace's rustls with the ring provider.

use crate::meta;
use crate::stow::{FailureReason, StowResponse};
use std::path::Path;
use std::time::Duration;

/// Why a STOW-RS delivery did not happen or did not fully succeed. Names
/// positions in the batch and reason codes, never a UID or the token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The destination is not `dicomweb+http://` or `dicomweb+https://`.
    #[error("destination is not a dicomweb+http(s):// URL")]
    BadUrl,
    /// The token file cannot be read.
    #[error("cannot read the bearer token file: {0}")]
    TokenFile(std::io::Error),
    /// The token file can be read by others than its owner.
    #[error("bearer token file has mode {mode:o}; it must be 0600 or stricter")]
    TokenFileMode {
        /// Its permission bits.
        mode: u32,
    },
    /// The token file holds no token.
    #[error("bearer token file is empty")]
    TokenEmpty,
    /// An instance to send is not a PS3.10 file.
    #[error("instance {index} of the batch cannot be sent: {source}")]
    NotDicom {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        source: meta::MetaError,
    },
    /// An instance file to send cannot be read.
    #[error("instance {index} of the batch cannot be read: {source}")]
    Read {
        /// Its position in the batch.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// No response (connection refused, TLS, timeout).
    #[error("STOW-RS request failed: {0}")]
    Transport(String),
    /// The peer answered with an error status and no STOW-RS body.
    #[error("STOW-RS peer answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The peer did not store every instance.
    #[error(
        "STOW-RS peer (HTTP {status}) refused {} and did not mention {} of the batch",
        failed.len(), missing.len()
    )]
    Incomplete {
        /// The HTTP status.
        status: u16,
        /// Refused instances: position in the batch and reason.
        failed: Vec<(usize, FailureReason)>,
        /// Positions neither referenced nor refused.
        missing: Vec<usize>,
    },
}

/// A STOW-RS destination with its credentials.
pub struct StowClient {
    agent: ureq::Agent,
    studies_url: String,
    token: Option<String>,
}

/// The token never appears in a log line through `{:?}`.
impl std::fmt::Debug for StowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StowClient")
            .field("studies_url", &self.studies_url)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// `dicomweb+http(s)://host/path` → `http(s)://host/path/studies`.
pub fn studies_url(destination: &str) -> Result<String, ClientError> {
    let rest = destination
        .strip_prefix("dicomweb+")
        .ok_or(ClientError::BadUrl)?;
    if !(rest.starts_with("http://") || rest.starts_with("https://")) {
        return Err(ClientError::BadUrl);
    }
    let host_and_path = rest.split_once("://").map(|x| x.1).unwrap_or_default();
    if host_and_path.is_empty() || host_and_path.starts_with('/') {
        return Err(ClientError::BadUrl);
    }
    Ok(format!("{}/studies", rest.trim_end_matches('/')))
}

/// Reads a bearer token from `path`, which only its owner may read: a
/// token readable by every local user is a token for everyone.
pub fn read_token_file(path: &Path) -> Result<String, ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(path).map_err(ClientError::TokenFile)?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ClientError::TokenFileMode { mode });
    }
    let token = std::fs::read_to_string(path)
        .map_err(ClientError::TokenFile)?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(ClientError::TokenEmpty);
    }
    Ok(token)
}

impl StowClient {
    /// A client for `destination` (`dicomweb+http(s)://host/path`), with
    /// the bearer token in `token_file` if any; each request (connect,
    /// send, answer) must be done within `timeout`.
    pub fn new(
        destination: &str,
        token_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<StowClient, ClientError> {
        let studies_url = studies_url(destination)?;
        let token = token_file.map(read_token_file).transpose()?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(StowClient {
            agent,
            studies_url,
            token,
        })
    }

    /// Sends `instances` (PS3.10 files) in one request. `Ok` only when
    /// the peer referenced every one; otherwise the error says which
    /// positions failed and why, so the caller can retry or park.
    pub fn store(&self, instances: &[&[u8]]) -> Result<usize, ClientError> {
        let mut uids = Vec::with_capacity(instances.len());
        for (index, bytes) in instances.iter().enumerate() {
            uids.push(instance_uids(bytes, index)?);
        }
        let boundary = boundary()?;
        let mut body = Vec::with_capacity(instances.iter().map(|i| i.len() + 128).sum());
        for bytes in instances {
            body.extend_from_slice(&part_head(&boundary));
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(&closing(&boundary));
        let len = body.len() as u64;
        self.send(
            ureq::SendBody::from_owned_reader(std::io::Cursor::new(body)),
            len,
            &boundary,
            &uids,
        )
    }

    /// As [`StowClient::store`], streaming the instances from files (the
    /// spool) instead of memory: a study of any size is sent with a few
    /// buffers. Only each file's first MiB is read ahead, for its UIDs.
    pub fn store_files(&self, files: &[&Path]) -> Result<usize, ClientError> {
        use std::io::Read;
        let boundary = boundary()?;
        let mut uids = Vec::with_capacity(files.len());
        let mut len = closing(&boundary).len() as u64;
        let mut body: Box<dyn Read + Send> = Box::new(std::io::empty());
        for (index, path) in files.iter().enumerate() {
            let read = |source| ClientError::Read { index, source };
            let mut file = std::fs::File::open(path).map_err(read)?;
            let size = file.metadata().map_err(read)?.len();
            let mut head = Vec::new();
            (&mut file)
                .take(HEAD_BYTES)
                .read_to_end(&mut head)
                .map_err(read)?;
            uids.push(instance_uids(&head, index)?);
            let part = part_head(&boundary);
            len += part.len() as u64 + size + 2;
            body = Box::new(
                body.chain(std::io::Cursor::new(part))
                    .chain(std::io::Cursor::new(head))
                    .chain(file)
                    .chain(&b"\r\n"[..]),
            );
        }
        let body = body.chain(std::io::Cursor::new(closing(&boundary)));
        self.send(
            ureq::SendBody::from_owned_reader(body),
            len,
            &boundary,
            &uids,
        )
    }

    fn send(
        &self,
        body: ureq::SendBody<'_>,
        len: u64,
        boundary: &str,
        uids: &[Vec<String>],
    ) -> Result<usize, ClientError> {
        let mut req = self
            .agent
            .post(&self.studies_url)
            .header(
                "Content-Type",
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header("Content-Length", len.to_string())
            .header("Accept", "application/dicom+json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let started = std::time::Instant::now();
        let mut resp = req
            .send(body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let answer = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let parsed = StowResponse::from_json(&answer);
        tracing::info!(
            instances = uids.len(),
            status,
            ms = started.elapsed().as_millis() as u64,
            "STOW-RS request sent"
        );
        let Some(parsed) = parsed.filter(|_| matches!(status, 200 | 202 | 409)) else {
            return Err(ClientError::Status { status });
        };
        let mut failed = Vec::new();
        let mut missing = Vec::new();
        for (index, uids) in uids.iter().enumerate() {
            let ours = |uid: &str| uids.iter().any(|u| u == uid);
            let referenced = parsed.referenced.iter().any(|r| ours(&r.instance_uid));
            if let Some((_, why)) = parsed.failed.iter().find(|(r, _)| ours(&r.instance_uid)) {
                failed.push((index, *why));
            } else if !referenced {
                missing.push(index);
            }
        }
        if failed.is_empty() && missing.is_empty() && status == 200 {
            Ok(uids.len())
        } else {
            Err(ClientError::Incomplete {
                status,
                failed,
                missing,
            })
        }
    }
}

/// How much of each file [`StowClient::store_files`] reads ahead for the
/// UIDs (File Meta and the data set's header up to the pixels, usually a
/// few KiB).
const HEAD_BYTES: u64 = 1 << 20;

/// The SOP Instance UIDs a peer may name instance `index` by: the File
/// Meta's, and the data set's when it differs (real files do).
fn instance_uids(bytes: &[u8], index: usize) -> Result<Vec<String>, ClientError> {
    let m = meta::read(bytes).map_err(|source| ClientError::NotDicom { index, source })?;
    let mut uids = vec![m.sop_instance_uid];
    uids.extend(meta::dataset_uids(bytes).map(|(_, i)| i));
    Ok(uids)
}

fn part_head(boundary: &str) -> Vec<u8> {
    format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes()
}

fn closing(boundary: &str) -> Vec<u8> {
    format!("--{boundary}--\r\n").into_bytes()
}

fn boundary() -> Result<String, ClientError> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| ClientError::Transport(e.to_string()))?;
    Ok(format!(
        "veil-{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Destinations map to their `/studies` URL; other schemes are refused.
    #[test]
    fn destination_urls() {
        assert_eq!(
            studies_url("dicomweb+http://h:8042/dicom-web").unwrap(),
            "http://h:8042/dicom-web/studies"
        );
        assert_eq!(
            studies_url("dicomweb+https://h/x/").unwrap(),
            "https://h/x/studies"
        );
        for bad in [
            "http://h/x",
            "dicomweb+ftp://h",
            "dicomweb+http://",
            "dicom://A@h:1",
        ] {
            assert!(
                matches!(studies_url(bad), Err(ClientError::BadUrl)),
                "{bad}"
            );
        }
    }

    /// A token file readable by the group is refused; 0600 is read and
    /// trimmed; the token is not in the client's Debug text.
    #[test]
    fn token_file_must_be_private() {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = veil_test::scratch("dicomweb-token");
        let p = dir.join("token");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap()
            .write_all(b"veil_secret\n")
            .unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "veil_secret");
        let c = StowClient::new(
            "dicomweb+http://127.0.0.1:1/x",
            Some(&p),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("veil_secret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_token_file(&p),
            Err(ClientError::TokenFileMode { mode: 0o640 })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
