//! Issue 22, item 6: the parser has limits. Nested sequences deeper than
//! `MAX_SEQUENCE_DEPTH` and deflated data sets that inflate past
//! `inflate_cap` are refused with a `LimitExceeded` reason (on main the
//! first overflowed the stack, the second took gigabytes).

use veil_core::limits::{inflate_cap, Limit, MAX_SEQUENCE_DEPTH};
use veil_core::QuarantineReason;
use veil_test::hostile;

fn limit_of(r: Result<veil_io::DicomFile, veil_io::ReadError>) -> Option<(Limit, u64)> {
    match r.map(|_| ()).map_err(|e| e.reason) {
        Err(QuarantineReason::LimitExceeded { limit, max, .. }) => Some((limit, max)),
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn issue_22_nested_sequences_past_the_depth_limit_are_refused() {
    // 200,000 levels (4 MB): on main the recursive parser overflowed the
    // stack and the process aborted
    let deep = hostile::nested_sequences("1.2.3.4", 200_000);
    assert!(deep.len() > 4_000_000);
    assert_eq!(
        limit_of(veil_io::read_bytes(deep)),
        Some((Limit::SequenceDepth, MAX_SEQUENCE_DEPTH))
    );
    // one past the limit is refused, the limit itself is read
    let over = hostile::nested_sequences("1.2.3.4", MAX_SEQUENCE_DEPTH as usize + 1);
    assert_eq!(
        limit_of(veil_io::read_bytes(over)).map(|l| l.0),
        Some(Limit::SequenceDepth)
    );
    let at = hostile::nested_sequences("1.2.3.4", MAX_SEQUENCE_DEPTH as usize);
    veil_io::read_bytes(at).expect("64 levels are read");
}

#[test]
fn issue_22_deflate_bomb_is_refused() {
    // 300 MiB of zeros deflate to about 300 kB: past the 256 MiB floor
    let bomb = hostile::deflated("1.2.3.4", 300 << 20);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let tmp = veil_test::scratch("io-limits");
    let path = tmp.join("bomb.dcm");
    veil_io::atomic::write_all(&path, &bomb).unwrap();
    let (limit, max) = limit_of(veil_io::read(&path)).unwrap();
    assert_eq!(limit, Limit::InflatedSize);
    assert_eq!(max, inflate_cap(bomb.len() as u64));
    // a deflated object under the cap is read, its value in memory
    let small = hostile::deflated("1.2.3.4", 1 << 20);
    let f = veil_io::read_bytes(small).expect("a small deflated object is read");
    assert!(f.ts.deflated);
    let _ = std::fs::remove_dir_all(&tmp);
}
