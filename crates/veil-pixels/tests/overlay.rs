//! Overlay planes render bit for bit, from the header or from disk.

mod common;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element};

fn us(tag: Tag, v: &[u16]) -> Element {
    Element::bytes(
        tag,
        VR::US,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn ss(tag: Tag, v: &[i16]) -> Element {
    Element::bytes(
        tag,
        VR::SS,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// Packs bits LSB first, as Overlay Data stores them.
fn pack(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn image(rows: u16, cols: u16, frames: u32) -> DataSet {
    let n = rows as usize * cols as usize * frames as usize;
    DataSet::of([
        Element::text(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        Element::text(Tag(0x0008, 0x0018), VR::UI, "2.25.42"),
        us(Tag(0x0028, 0x0002), &[1]),
        Element::text(Tag(0x0028, 0x0004), VR::CS, "MONOCHROME2 "),
        Element::text(Tag(0x0028, 0x0008), VR::IS, &frames.to_string()),
        us(Tag(0x0028, 0x0010), &[rows]),
        us(Tag(0x0028, 0x0011), &[cols]),
        us(Tag(0x0028, 0x0100), &[16]),
        us(Tag(0x0028, 0x0101), &[12]),
        us(Tag(0x0028, 0x0102), &[11]),
        us(Tag(0x0028, 0x0103), &[0]),
        Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, vec![0; n * 2]),
    ])
}

fn overlay(ds: &mut DataSet, group: u16, rows: u16, cols: u16, frames: u32, bits: &[bool]) {
    let t = |e| Tag(group, e);
    ds.put(us(t(0x0010), &[rows]));
    ds.put(us(t(0x0011), &[cols]));
    if frames > 1 {
        ds.put(Element::text(t(0x0015), VR::IS, &frames.to_string()));
        ds.put(us(t(0x0051), &[1]));
    }
    ds.put(Element::text(t(0x0040), VR::CS, "G "));
    ds.put(ss(t(0x0050), &[3, 5]));
    ds.put(us(t(0x0100), &[1]));
    ds.put(us(t(0x0102), &[0]));
    ds.put(Element::bytes(t(0x3000), VR::OW, pack(bits)));
}

/// A deterministic bit pattern, not symmetric in any way.
fn pattern(n: usize, seed: usize) -> Vec<bool> {
    (0..n)
        .map(|i| (i * 7 + seed * 13 + i / 5) % 3 == 0)
        .collect()
}

fn round_trip(ds: &DataSet, name: &str) -> veil_io::DicomFile {
    let dir = std::env::temp_dir().join(format!("veil-pixels-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    veil_io::write_explicit_le(&path, ds).unwrap();
    veil_io::read(&path).unwrap()
}

#[test]
fn overlay_planes_render_bit_for_bit() {
    let (rows, cols) = (37u16, 29u16);
    let mut ds = image(rows, cols, 2);
    let small = pattern(rows as usize * cols as usize, 1);
    overlay(&mut ds, 0x6000, rows, cols, 1, &small);
    // a large multi-frame plane (left on disk as a bulk value by veil-io)
    let (br, bc) = (400u16, 360u16);
    let big = pattern(br as usize * bc as usize * 2, 2);
    overlay(&mut ds, 0x6002, br, bc, 2, &big);
    let file = round_trip(&ds, "ov.dcm");
    assert!(matches!(
        file.dataset.get(Tag(0x6002, 0x3000)).unwrap().value,
        veil_io::Value::Bulk { .. }
    ));
    let ovs = veil_pixels::overlays(&file).unwrap();
    assert_eq!(ovs.len(), 3);
    let check = |o: &veil_pixels::Overlay, bits: &[bool], w: u32| {
        assert_eq!(o.origin, (4, 2), "origin is (column-1, row-1)");
        assert!(!o.embedded);
        for (i, b) in bits.iter().enumerate() {
            let p = o.image.get_pixel(i as u32 % w, i as u32 / w).0[0];
            assert_eq!(
                p,
                if *b { 255 } else { 0 },
                "group {:04X} pixel {i}",
                o.group
            );
        }
    };
    assert_eq!((ovs[0].group, ovs[0].frame), (0x6000, 0));
    assert_eq!(ovs[0].image.dimensions(), (cols as u32, rows as u32));
    check(&ovs[0], &small, cols as u32);
    let plane = br as usize * bc as usize;
    assert_eq!((ovs[1].group, ovs[1].frame, ovs[2].frame), (0x6002, 0, 1));
    check(&ovs[1], &big[..plane], bc as u32);
    check(&ovs[2], &big[plane..], bc as u32);
}

#[test]
fn overlay_in_unused_pixel_bits_is_rendered() {
    let (rows, cols) = (8u16, 10u16);
    let mut ds = image(rows, cols, 1);
    let bits = pattern(80, 3);
    // 12 bits stored, overlay in bit 15 of each 16-bit sample
    let px: Vec<u8> = bits
        .iter()
        .enumerate()
        .flat_map(|(i, b)| ((i as u16 * 37) & 0x0FFF | if *b { 0x8000 } else { 0 }).to_le_bytes())
        .collect();
    ds.put(Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, px));
    let t = |e| Tag(0x6004, e);
    ds.put(us(t(0x0010), &[rows]));
    ds.put(us(t(0x0011), &[cols]));
    ds.put(ss(t(0x0050), &[1, 1]));
    ds.put(us(t(0x0100), &[16]));
    ds.put(us(t(0x0102), &[15]));
    let file = round_trip(&ds, "embedded.dcm");
    let ovs = veil_pixels::overlays(&file).unwrap();
    assert_eq!(ovs.len(), 1);
    assert!(ovs[0].embedded);
    assert_eq!(ovs[0].origin, (0, 0));
    for (i, b) in bits.iter().enumerate() {
        let p = ovs[0].image.get_pixel(i as u32 % 10, i as u32 / 10).0[0];
        assert_eq!(p, if *b { 255 } else { 0 });
    }
}

#[test]
fn corpus_overlays_render() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let file = veil_io::read(&common::find(&corpus, "MR-SIEMENS-DICOM-WithOverlays.dcm")).unwrap();
    let ovs = veil_pixels::overlays(&file).unwrap();
    assert!(!ovs.is_empty());
    assert!(ovs.iter().all(|o| o.image.contains(&255)));
    let file = veil_io::read(&common::find(&corpus, "examples_overlay.dcm")).unwrap();
    let ovs = veil_pixels::overlays(&file).unwrap();
    assert!(!ovs.is_empty());
}
