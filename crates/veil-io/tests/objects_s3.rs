//! veil-io's object storage against a real S3-compatible server: SeaweedFS
//! started by scripts/seaweedfs.sh (`eval "$(scripts/seaweedfs.sh start)"`).
//! Skips when `VEIL_TEST_S3_ENDPOINT` is unset, unless `VEIL_REQUIRE_S3`.
//!
//! Each test works under its own random prefix, so tests run in parallel
//! and reruns never see each other's objects.

#![allow(clippy::print_stderr)] // says when a check is skipped

use std::io::{Read, Write};
use std::sync::Mutex;

use veil_io::objects::{Bucket, Location, ObjectError, S3Options, MIN_PART_SIZE};

fn bucket(name: &str) -> Option<Bucket> {
    let (endpoint, bucket) = veil_test::s3_endpoint()?;
    let mut r = [0u8; 8];
    getrandom(&mut r);
    let prefix = format!("veil-io-tests/{name}-{}", hex(&r));
    let opts = S3Options {
        endpoint: Some(endpoint),
    };
    let loc = Location::parse(&format!("s3://{bucket}/{prefix}/")).unwrap();
    Some(Bucket::for_location(&loc, &opts).unwrap().unwrap())
}

fn getrandom(buf: &mut [u8]) {
    // std only: the process id and the clock are unique enough per test
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    buf.copy_from_slice(&h.finish().to_le_bytes()[..buf.len()]);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The tests that upload in parts, one at a time: the pending-upload check
/// looks at the whole bucket.
static MULTIPART: Mutex<()> = Mutex::new(());

/// SeaweedFS keeps each pending multipart upload as a folder under
/// `/buckets/BUCKET/.uploads/` in its filer (`VEIL_TEST_S3_FILER`, printed
/// by scripts/seaweedfs.sh; S3 itself has ListMultipartUploads, which
/// object_store does not expose). Their number, or `None` when the filer's
/// address is not known.
fn pending_uploads() -> Option<usize> {
    let filer = std::env::var("VEIL_TEST_S3_FILER").ok()?;
    let (_, bucket) = veil_test::s3_endpoint()?;
    let addr = filer.trim_start_matches("http://").trim_end_matches('/');
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /buckets/{bucket}/.uploads/?limit=1000 HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    if r.starts_with("HTTP/1.1 404") || r.starts_with("HTTP/1.0 404") {
        return Some(0);
    }
    assert!(
        r.contains(" 200 "),
        "filer: {}",
        r.lines().next().unwrap_or("")
    );
    Some(r.matches("\"FullPath\"").count())
}

/// Bytes that differ part to part, so a misordered or repeated part shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i >> 20) as u8).collect()
}

#[test]
fn small_objects_list_get_exists_delete() {
    let Some(b) = bucket("small") else { return };
    assert_eq!(b.list().unwrap(), vec![]);
    b.put_complete("b/2.dcm", b"second").unwrap();
    b.put_complete("a.dcm", b"first").unwrap();
    b.put_complete("b/1.dcm", b"").unwrap();
    assert_eq!(
        b.list().unwrap(),
        vec![
            ("a.dcm".to_string(), 5),
            ("b/1.dcm".to_string(), 0),
            ("b/2.dcm".to_string(), 6),
        ]
    );
    assert_eq!(b.get("b/2.dcm").unwrap(), b"second");
    assert!(b.exists("a.dcm").unwrap());
    assert!(!b.exists("c.dcm").unwrap());
    assert!(matches!(b.get("c.dcm"), Err(ObjectError::NotFound { .. })));
    // an overwrite replaces the whole object
    b.put_complete("a.dcm", b"FIRST!").unwrap();
    assert_eq!(b.get("a.dcm").unwrap(), b"FIRST!");
    for (k, _) in b.list().unwrap() {
        b.delete(&k).unwrap();
    }
    b.delete("never-there.dcm").unwrap();
    assert_eq!(b.list().unwrap(), vec![]);
}

#[test]
fn large_objects_go_multipart_and_read_back_whole() {
    let Some(b) = bucket("multipart") else { return };
    let _one = MULTIPART.lock().unwrap_or_else(|e| e.into_inner());
    // threshold and parts at S3's 5 MiB minimum: 12 MiB + 3 bytes is three
    // parts (5, 5, 2 MiB + 3)
    let b = b.with_part_size(MIN_PART_SIZE, MIN_PART_SIZE);
    let data = pattern(12 * 1024 * 1024 + 3);
    b.put_complete("big.dcm", &data).unwrap();
    assert_eq!(
        b.list().unwrap(),
        vec![("big.dcm".to_string(), data.len() as u64)]
    );
    assert!(b.get("big.dcm").unwrap() == data);
    // exactly the threshold is one PUT; one byte more is two parts
    for n in [MIN_PART_SIZE, MIN_PART_SIZE + 1] {
        let d = pattern(n);
        b.put_reader("edge.dcm", &d[..]).unwrap();
        assert!(b.get("edge.dcm").unwrap() == d, "{n} bytes");
    }
    b.delete("big.dcm").unwrap();
    b.delete("edge.dcm").unwrap();
}

/// A reader that yields `ok` bytes and then fails.
struct Failing {
    data: Vec<u8>,
    at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Err(std::io::Error::other("disk went away"));
        }
        let n = buf.len().min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_failed_upload_leaves_no_object() {
    let Some(b) = bucket("aborted") else { return };
    let _one = MULTIPART.lock().unwrap_or_else(|e| e.into_inner());
    let before = pending_uploads();
    let b = b.with_part_size(MIN_PART_SIZE, MIN_PART_SIZE);
    // fails after two whole parts were sent: the multipart upload is
    // aborted, nothing appears
    let r = Failing {
        data: pattern(2 * MIN_PART_SIZE + 1000),
        at: 0,
    };
    let e = b.put_reader("broken.dcm", r).unwrap_err();
    assert!(matches!(e, ObjectError::Read(_)), "{e:?}");
    assert!(!e.to_string().contains("broken"), "{e}");
    assert!(!b.exists("broken.dcm").unwrap());
    assert_eq!(b.list().unwrap(), vec![]);
    // and no pending upload is left behind (its parts would be billed)
    if let Some(n) = pending_uploads() {
        assert_eq!(Some(n), before, "pending multipart uploads");
    } else {
        eprintln!("VEIL_TEST_S3_FILER not set: pending uploads not checked");
    }
    // and a failure before the first part is a single PUT never sent
    let r = Failing {
        data: pattern(1000),
        at: 0,
    };
    assert!(matches!(
        b.put_reader("tiny.dcm", r),
        Err(ObjectError::Read(_))
    ));
    assert!(!b.exists("tiny.dcm").unwrap());
    // a rerun writes it whole
    let data = pattern(2 * MIN_PART_SIZE + 1000);
    b.put_reader("broken.dcm", &data[..]).unwrap();
    assert!(b.exists("broken.dcm").unwrap());
    assert!(b.get("broken.dcm").unwrap() == data);
    b.delete("broken.dcm").unwrap();
}

#[test]
fn one_bucket_serves_many_threads() {
    let Some(b) = bucket("threads") else { return };
    std::thread::scope(|s| {
        for t in 0..8 {
            let b = &b;
            s.spawn(move || {
                for i in 0..4 {
                    let k = format!("t{t}/{i}.dcm");
                    b.put_complete(&k, k.as_bytes()).unwrap();
                    assert_eq!(b.get(&k).unwrap(), k.as_bytes());
                }
            });
        }
    });
    let listed = b.list().unwrap();
    assert_eq!(listed.len(), 32);
    for (k, n) in listed {
        assert_eq!(n, k.len() as u64);
        b.delete(&k).unwrap();
    }
}

#[test]
fn errors_do_not_name_the_key() {
    let Some(b) = bucket("errors") else { return };
    let e = b.get("Smith_John/1.dcm").unwrap_err();
    assert!(matches!(e, ObjectError::NotFound { .. }), "{e:?}");
    let msg = format!("{e} {e:?} {b:?}");
    assert!(!msg.contains("Smith") && !msg.contains("errors"), "{msg}");
}

#[test]
fn the_endpoint_can_come_from_the_environment() {
    let Some((endpoint, bucket)) = veil_test::s3_endpoint() else {
        return;
    };
    // scripts/seaweedfs.sh prints AWS_ENDPOINT_URL too: `veil` run by hand
    // after its `eval` reaches the server with no option
    if std::env::var("AWS_ENDPOINT_URL").ok().as_deref() != Some(endpoint.as_str()) {
        eprintln!("AWS_ENDPOINT_URL is not the test server; skipping");
        return;
    }
    let loc = Location::from_os(std::ffi::OsStr::new(&format!(
        "s3://{bucket}/veil-io-tests/env"
    )))
    .unwrap();
    let b = Bucket::for_location(&loc, &S3Options::default())
        .unwrap()
        .unwrap();
    b.put_complete("x.dcm", b"x").unwrap();
    assert!(b.exists("x.dcm").unwrap());
    b.delete("x.dcm").unwrap();
    assert!(!b.exists("x.dcm").unwrap());
}
