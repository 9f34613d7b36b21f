//! Real DICOM peers for the gateway's tests: Debian's Orthanc (with its
//! DICOMweb plugin), started on loopback with a configuration in a scratch
//! folder and stopped by PID when the handle drops. Orthanc starts in well
//! under a second without systemd, so each test can have its own PACS and
//! recipients instead of sharing one whose state other tests change.
//!
//! Its REST API is driven with `curl` (a peer tool, like dcmtk's): test
//! support stays free of an HTTP stack, and what is sent is what a site's
//! own scripts would send.
//!
//! dcmtk's `dcmqrscp` is the other query/retrieve PACS (`veil pull`), with
//! its database indexed by `dcmqridx` in the same kind of scratch folder.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package's DICOMweb plugin.
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/// A loopback port nobody listens on now (bound, read, released). Another
/// process may take it before the caller binds it; tests tolerate that as
/// a rare failure rather than hide ports behind a shared registry.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A DICOM node Orthanc may send to (`DicomModalities`).
#[derive(Debug, Clone)]
pub struct Modality {
    /// Orthanc's name for it (`POST /modalities/{name}/store`).
    pub name: String,
    /// Its AE title.
    pub aet: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// A running Orthanc; killed and its folder removed on drop.
#[derive(Debug)]
pub struct Orthanc {
    /// Its AE title.
    pub aet: String,
    /// REST and DICOMweb port on 127.0.0.1.
    pub http_port: u16,
    /// DICOM port on 127.0.0.1.
    pub dicom_port: u16,
    dir: PathBuf,
    child: Child,
}

impl Orthanc {
    /// Starts Orthanc `aet` in `dir` (created; removed on drop) that knows
    /// `modalities`, with the DICOMweb plugin enabled at `/dicom-web/`.
    /// Panics, with Orthanc's log, if it is not answering within 20 s.
    pub fn start(dir: &Path, aet: &str, modalities: &[Modality]) -> Orthanc {
        Orthanc::start_with(dir, aet, modalities, "")
    }

    /// As [`Orthanc::start`], with `dicomweb_extra` (JSON members, e.g.
    /// `"Servers": {...}`) added to the `DicomWeb` section: the DICOMweb
    /// servers this Orthanc may send to with
    /// `POST /dicom-web/servers/{name}/stow`.
    pub fn start_with(
        dir: &Path,
        aet: &str,
        modalities: &[Modality],
        dicomweb_extra: &str,
    ) -> Orthanc {
        std::fs::create_dir_all(dir).expect("orthanc folder");
        let http_port = free_port();
        let dicom_port = free_port();
        let mods: Vec<String> = modalities
            .iter()
            .map(|m| format!("\"{}\": [\"{}\", \"127.0.0.1\", {}]", m.name, m.aet, m.port))
            .collect();
        let store = dir.join("db");
        let config = format!(
            r#"{{
  "Name": "{aet}",
  "StorageDirectory": "{store}",
  "IndexDirectory": "{store}",
  "HttpPort": {http_port},
  "DicomPort": {dicom_port},
  "DicomAet": "{aet}",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": true,
  "UnknownSopClassAccepted": true,
  "StorageCompression": false,
  "DicomModalities": {{ {mods} }},
  "Plugins": ["{plugin}"],
  "DicomWeb": {{ "Enable": true, "Root": "/dicom-web/"{sep}{dicomweb_extra} }}
}}"#,
            sep = if dicomweb_extra.is_empty() { "" } else { ", " },
            store = store.display(),
            mods = mods.join(", "),
            plugin = DICOMWEB_PLUGIN,
        );
        let cfg = dir.join("orthanc.json");
        scratch_file(&cfg)
            .write_all(config.as_bytes())
            .expect("orthanc config");
        let log = scratch_file(&dir.join("orthanc.log"));
        let child = Command::new("Orthanc")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Orthanc (Debian package orthanc) on PATH");
        let o = Orthanc {
            aet: aet.to_string(),
            http_port,
            dicom_port,
            dir: dir.to_path_buf(),
            child,
        };
        let start = Instant::now();
        while o.try_get("/system").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Orthanc {aet} did not start: {}",
                std::fs::read_to_string(o.dir.join("orthanc.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        o
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn try_get(&self, path: &str) -> Option<Vec<u8>> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "60"])
            .arg(format!("{}{path}", self.url()))
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// GET `path`; panics on an HTTP error.
    pub fn get(&self, path: &str) -> Vec<u8> {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} on Orthanc {} failed", self.aet))
    }

    /// POST `body` (a file's bytes or JSON) to `path`; panics on an HTTP
    /// error.
    pub fn post(&self, path: &str, body: &[u8]) -> Vec<u8> {
        match self.try_post(path, body) {
            Ok(out) => out,
            Err(out) => panic!(
                "POST {path} on Orthanc {} failed: {}",
                self.aet,
                String::from_utf8_lossy(&out)
            ),
        }
    }

    /// POST `body` to `path`: `Ok(response)`, or `Err(response)` on an
    /// HTTP error (for tests where Orthanc is expected to fail, e.g. a
    /// STOW-RS to a peer that refuses it).
    pub fn try_post(&self, path: &str, body: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        let mut curl = Command::new("curl")
            .args(["-sf", "--max-time", "600", "--data-binary", "@-"])
            .arg(format!("{}{path}", self.url()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        curl.stdin
            .take()
            .expect("curl's stdin")
            .write_all(body)
            .expect("request body to curl");
        let out = curl.wait_with_output().expect("curl");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(out.stdout)
        }
    }

    /// Stores a DICOM file through the REST API.
    pub fn upload(&self, file: &Path) {
        let bytes = std::fs::read(file).expect("a file to upload");
        self.post("/instances", &bytes);
    }

    /// The ids of every instance Orthanc holds.
    pub fn instances(&self) -> Vec<String> {
        ids(&self.get("/instances"))
    }

    /// The ids of every study Orthanc holds.
    pub fn studies(&self) -> Vec<String> {
        ids(&self.get("/studies"))
    }

    /// The stored file of instance `id`, as Orthanc returns it.
    pub fn instance_file(&self, id: &str) -> Vec<u8> {
        self.get(&format!("/instances/{id}/file"))
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// dcmtk's `dcmqrscp` as a query/retrieve PACS: answers C-FIND and C-MOVE
/// (Study Root) over `files`, indexed with `dcmqridx`, and moves to the
/// `destinations` (its HostTable). Killed and its folder removed on drop.
#[derive(Debug)]
pub struct Dcmqrscp {
    /// Its AE title.
    pub aet: String,
    /// DICOM port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Dcmqrscp {
    /// Copies `files` into `dir`/db, indexes them and starts dcmqrscp;
    /// panics, with its log, if it is not listening within 10 s.
    pub fn start(dir: &Path, aet: &str, files: &[PathBuf], destinations: &[Modality]) -> Dcmqrscp {
        let db = dir.join("db");
        std::fs::create_dir_all(&db).expect("dcmqrscp folder");
        let mut idx = Command::new("dcmqridx");
        idx.arg(&db);
        for (i, f) in files.iter().enumerate() {
            let to = db.join(format!("f{i}.dcm"));
            std::fs::copy(f, &to).expect("copy into dcmqrscp's storage");
            idx.arg(to);
        }
        let st = idx.status().expect("dcmqridx (dcmtk) on PATH");
        assert!(st.success(), "dcmqridx failed");
        let port = free_port();
        let hosts: String = destinations
            .iter()
            .map(|m| format!("{} = ({}, 127.0.0.1, {})\n", m.name, m.aet, m.port))
            .collect();
        let config = format!(
            "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 8\n\n\
             HostTable BEGIN\n{hosts}HostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n\
             AETable BEGIN\n{aet} {db} RW (200, 1024mb) ANY\nAETable END\n",
            db = db.display()
        );
        let cfg = dir.join("dcmqrscp.cfg");
        scratch_file(&cfg)
            .write_all(config.as_bytes())
            .expect("dcmqrscp config");
        let log = scratch_file(&dir.join("dcmqrscp.log"));
        let child = Command::new("dcmqrscp")
            .arg("-c")
            .arg(&cfg)
            .current_dir(dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dcmqrscp (dcmtk) on PATH");
        let q = Dcmqrscp {
            aet: aet.to_string(),
            port,
            dir: dir.to_path_buf(),
            child,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "dcmqrscp did not start: {}",
                std::fs::read_to_string(q.dir.join("dcmqrscp.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        q
    }
}

impl Drop for Dcmqrscp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch file of the harness's own (a config, a log): not a Veil
/// output, so not written through veil-io's atomic writer.
fn scratch_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("a scratch file")
}

/// The strings of a JSON array of strings (Orthanc's id lists), without a
/// JSON parser: Orthanc ids are hex and dashes, never quoted or escaped.
fn ids(json: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(json)
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: an Orthanc starts, takes a real file over REST
    /// and over DICOM (dcmtk's storescu), answers C-ECHO, lists and returns
    /// what it stored, and is gone after drop.
    #[test]
    fn orthanc_starts_stores_and_stops() {
        let Some(corpus) = crate::corpus() else {
            return;
        };
        let file = crate::files(&corpus)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("__CT_small.dcm"))
            .expect("the corpus's CT_small.dcm");
        let dir = crate::scratch("orthanc-harness");
        let o = Orthanc::start(&dir.join("pacs"), "PACS", &[]);
        o.upload(&file);
        assert_eq!(o.instances().len(), 1);
        assert_eq!(o.studies().len(), 1);
        let back = o.instance_file(&o.instances()[0]);
        assert!(back.len() > 132 && &back[128..132] == b"DICM");
        let port = o.dicom_port.to_string();
        let echo = Command::new("echoscu")
            .args(["-aec", "PACS", "127.0.0.1", &port])
            .status()
            .expect("echoscu (dcmtk)");
        assert!(echo.success());
        let other = crate::files(&corpus)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("__MR_small.dcm"))
            .expect("the corpus's MR_small.dcm");
        let st = Command::new("storescu")
            .args(["-aec", "PACS", "127.0.0.1", &port])
            .arg(&other)
            .status()
            .expect("storescu (dcmtk)");
        assert!(st.success());
        assert_eq!(o.instances().len(), 2);
        let url = o.url();
        drop(o);
        let gone = Command::new("curl")
            .args(["-sf", "--max-time", "2"])
            .arg(format!("{url}/system"))
            .status()
            .expect("curl");
        assert!(!gone.success(), "Orthanc still answers after drop");
        assert!(!dir.join("pacs").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
