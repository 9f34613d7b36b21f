//! Building the text set: decode a real corpus image (dicom-pixeldata),
//! draw lines of fake identifying text into its stored values, write it as
//! Explicit VR Little Endian (veil-io), and let a real peer encoder
//! (dcmtk, GDCM) transcode it to the target transfer syntax.

use std::path::{Path, PathBuf};
use std::process::Command;

use rayon::prelude::*;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element, WriteMeta};

use super::pixels::{decode, Pixels};
use super::{line_glyphs, FileEntry, Line, Manifest};
use crate::{Identity, Rng};

/// A transfer syntax of the set, with the peer that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Implicit VR Little Endian (dcmconv +ti).
    ImplicitLe,
    /// Explicit VR Little Endian (veil-io).
    ExplicitLe,
    /// Explicit VR Big Endian, retired (dcmconv +tb).
    ExplicitBe,
    /// Deflated Explicit VR Little Endian (dcmconv +td).
    Deflated,
    /// RLE Lossless (dcmcrle).
    Rle,
    /// JPEG Baseline, process 1 (dcmcjpeg +eb).
    JpegBaseline,
    /// JPEG Extended, process 2 & 4 (dcmcjpeg +ee).
    JpegExtended,
    /// JPEG Lossless, process 14 (.57; dcmcjpeg +el).
    JpegLossless,
    /// JPEG Lossless SV1 (.70; dcmcjpeg +e1).
    JpegLosslessSv1,
    /// JPEG-LS Lossless (dcmcjpls).
    JpegLs,
    /// JPEG 2000 Lossless (gdcmconv --j2k).
    J2kLossless,
    /// JPEG 2000 (lossy; gdcmconv --j2k --lossy).
    J2k,
}

use Syntax::*;

impl Syntax {
    /// Every syntax of the set.
    pub const ALL: [Syntax; 12] = [
        ImplicitLe,
        ExplicitLe,
        ExplicitBe,
        Deflated,
        Rle,
        JpegBaseline,
        JpegExtended,
        JpegLossless,
        JpegLosslessSv1,
        JpegLs,
        J2kLossless,
        J2k,
    ];
    /// The UID.
    pub fn uid(self) -> &'static str {
        match self {
            ImplicitLe => "1.2.840.10008.1.2",
            ExplicitLe => "1.2.840.10008.1.2.1",
            ExplicitBe => "1.2.840.10008.1.2.2",
            Deflated => "1.2.840.10008.1.2.1.99",
            Rle => "1.2.840.10008.1.2.5",
            JpegBaseline => "1.2.840.10008.1.2.4.50",
            JpegExtended => "1.2.840.10008.1.2.4.51",
            JpegLossless => "1.2.840.10008.1.2.4.57",
            JpegLosslessSv1 => "1.2.840.10008.1.2.4.70",
            JpegLs => "1.2.840.10008.1.2.4.80",
            J2kLossless => "1.2.840.10008.1.2.4.90",
            J2k => "1.2.840.10008.1.2.4.91",
        }
    }
    /// A short name (file names, tables).
    pub fn short(self) -> &'static str {
        match self {
            ImplicitLe => "ile",
            ExplicitLe => "ele",
            ExplicitBe => "ebe",
            Deflated => "deflate",
            Rle => "rle",
            JpegBaseline => "jpeg-baseline",
            JpegExtended => "jpeg-extended",
            JpegLossless => "jpeg-ll57",
            JpegLosslessSv1 => "jpeg-ll70",
            JpegLs => "jpeg-ls",
            J2kLossless => "j2k-lossless",
            J2k => "j2k-lossy",
        }
    }
    /// Lossy compression.
    pub fn lossy(self) -> bool {
        matches!(self, JpegBaseline | JpegExtended | J2k)
    }
    /// The syntax of a UID.
    pub fn of_uid(uid: &str) -> Option<Syntax> {
        Syntax::ALL.into_iter().find(|s| s.uid() == uid)
    }
    /// The peer command that transcodes Explicit VR LE `src` into `dst`.
    fn command(self, src: &Path, dst: &Path) -> Option<Command> {
        let (prog, args): (&str, &[&str]) = match self {
            ExplicitLe => return None,
            ImplicitLe => ("dcmconv", &["+ti"]),
            ExplicitBe => ("dcmconv", &["+tb"]),
            Deflated => ("dcmconv", &["+td"]),
            Rle => ("dcmcrle", &[]),
            // keep the SOP Instance UID: the set gives each file its own
            JpegBaseline => ("dcmcjpeg", &["+eb", "+un"]),
            JpegExtended => ("dcmcjpeg", &["+ee", "+un"]),
            JpegLossless => ("dcmcjpeg", &["+el"]),
            JpegLosslessSv1 => ("dcmcjpeg", &["+e1"]),
            JpegLs => ("dcmcjpls", &[]),
            J2kLossless => ("gdcmconv", &["--j2k"]),
            // compression ratio 10: visibly lossy, text still legible
            J2k => ("gdcmconv", &["--j2k", "--lossy", "-r", "10"]),
        };
        let mut c = Command::new(prog);
        c.args(args).arg(src).arg(dst);
        Some(c)
    }
    /// Whether the peers can write `p` in this syntax without changing its
    /// stored values' meaning (lossy JPEG of 16-bit data rescales it;
    /// lossy palette indices are meaningless).
    fn fits(self, p: &Pixels) -> bool {
        let palette = p.pi == "PALETTE COLOR";
        match self {
            JpegBaseline => p.bits_allocated == 8 && !palette,
            JpegExtended => (p.bits_allocated == 8 || p.bits_stored <= 12) && !palette && !p.signed,
            J2k => !palette,
            _ => true,
        }
    }
}

/// How big a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetSize {
    /// A handful of files (unit tests): one per photometric family.
    Quick,
    /// CI: every syntax and photometric interpretation, ~60 files, images
    /// cropped to at most 512 pixels a side.
    Default,
    /// Benchmark: every template in every syntax it fits, full size, and
    /// the large multi-frame ultrasound cines.
    Full,
}

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The corpus root (`VEIL_CORPUS`).
    pub corpus: PathBuf,
    /// Seed for identities, text and placement.
    pub seed: u64,
    /// Set size.
    pub size: SetSize,
}

/// Why the set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A corpus template is missing or unreadable.
    #[error("corpus template {0} unreadable: {1}")]
    Template(String, String),
    /// A peer tool is not installed.
    #[error("peer tool {0} not found (install dcmtk and libgdcm-tools)")]
    Peer(&'static str),
    /// Writing failed.
    #[error("cannot write the set: {0}")]
    Io(String),
}

struct Template {
    rel: &'static str,
    /// Syntaxes in the default set.
    default: &'static [Syntax],
    /// In the quick set (with its first default syntax only... and the
    /// listed ones).
    quick: &'static [Syntax],
    /// Only in the full set (large).
    full_only: bool,
}

/// The templates: real images covering MONOCHROME1/2, RGB, YBR_FULL,
/// YBR_FULL_422 and PALETTE COLOR, 8 and 16 bits, signed and unsigned,
/// single and multi-frame (chosen from the corpus inventory; all native, so
/// that the set's reference values are the stored values themselves).
const TEMPLATES: &[Template] = &[
    // CT, MONOCHROME2, 16 bits allocated, 12 stored, 512x512
    Template {
        rel: "deb-octave-dicom-0.5.1-1/usr__share__octave__packages__dicom-0.5.1__imdata__CT-MONO2-16-ankle.dcm",
        default: &[ExplicitLe, ImplicitLe, ExplicitBe, Rle, JpegLosslessSv1, JpegLs, J2kLossless, J2k, JpegExtended],
        quick: &[JpegLs],
        full_only: false,
    },
    // MR, MONOCHROME2, 16 bits stored, 360x360
    Template {
        rel: "deb-dicom3tools-1.00~20220618093127-2/usr__share__doc__dicom3tools__examples__0051.dcm",
        default: &[ExplicitLe, Deflated, JpegLossless, J2kLossless],
        quick: &[],
        full_only: false,
    },
    // CT, MONOCHROME2, signed 16 bits, 128x128
    Template {
        rel: "pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm",
        default: &[ExplicitLe, Rle, JpegLs, J2k],
        quick: &[],
        full_only: false,
    },
    // US, MONOCHROME2, 8 bits, 768x1024
    Template {
        rel: "deid-data-0.0.20/deid_data__data__ultrasounds__GREYSCALE_IMAGE.dcm",
        default: &[ExplicitLe, JpegBaseline, JpegExtended, JpegLs, Rle, J2k, Deflated],
        quick: &[JpegBaseline],
        full_only: false,
    },
    // CT, MONOCHROME2, 16 bits, 2 frames
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__eCT_Supplemental.dcm",
        default: &[ExplicitLe, ExplicitBe, Rle, JpegLosslessSv1, JpegLs, J2kLossless],
        quick: &[Rle],
        full_only: false,
    },
    // CR, MONOCHROME1, 10 bits stored, 1760x1760
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__RG3_UNCR.dcm",
        default: &[ExplicitLe, ImplicitLe, JpegLosslessSv1, J2kLossless, J2k, JpegLs, Deflated, JpegExtended],
        quick: &[J2kLossless],
        full_only: false,
    },
    // US, RGB, 8 bits, 480x640
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__US1_UNCR.dcm",
        default: &[ExplicitLe, ExplicitBe, Rle, JpegBaseline, JpegLosslessSv1, JpegLs, J2kLossless, J2k],
        quick: &[ExplicitLe],
        full_only: false,
    },
    // SC, RGB, 8 bits, 2 frames, 100x100
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__SC_rgb_2frame.dcm",
        default: &[ExplicitLe, ImplicitLe, Rle, JpegBaseline, JpegLossless],
        quick: &[],
        full_only: false,
    },
    // SC, RGB, 16 bits, 100x100
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__SC_rgb_16bit.dcm",
        default: &[ExplicitLe, ExplicitBe, Rle],
        quick: &[],
        full_only: false,
    },
    // SC, YBR_FULL, 8 bits, 100x100
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__SC_ybr_full_uncompressed.dcm",
        default: &[ExplicitLe, Deflated, Rle, ImplicitLe],
        quick: &[],
        full_only: false,
    },
    // SC, YBR_FULL_422, 8 bits, 100x100
    Template {
        rel: "pydicom-3.0.2/pydicom__data__test_files__SC_ybr_full_422_uncompressed.dcm",
        default: &[ExplicitLe, ImplicitLe, ExplicitBe],
        quick: &[ExplicitLe],
        full_only: false,
    },
    // US, PALETTE COLOR, 8 bits, 2 frames, 600x800
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__OBXXXX1A_2frame.dcm",
        default: &[ExplicitLe, Rle, JpegLosslessSv1, JpegLs, J2kLossless, Deflated],
        quick: &[Rle],
        full_only: false,
    },
    // US, PALETTE COLOR, 16 bits, 480x640
    Template {
        rel: "pydicom-data-1.0.0/data_store__data__gdcm-US-ALOKA-16.dcm",
        default: &[ExplicitLe, ImplicitLe, Rle, JpegLossless],
        quick: &[],
        full_only: false,
    },
    // US, RGB, 240x320: JPEG with 4:4:4 and 4:2:2 colour (YBR_FULL and
    // YBR_FULL_422 as written by dcmcjpeg)
    Template {
        rel: "pydicom-3.0.2/pydicom__data__test_files__examples_rgb_color.dcm",
        default: &[JpegBaseline, JpegExtended, JpegLs],
        quick: &[],
        full_only: false,
    },
    // US cine, MONOCHROME2, 8 bits, 27 frames, 600x800
    Template {
        rel: "deid-data-0.0.20/deid_data__data__ultrasounds__GREYSCALE_CINE.zip__GREYSCALE_CINE.dcm",
        default: &[ExplicitLe, JpegBaseline, Rle, J2kLossless],
        quick: &[],
        full_only: true,
    },
    // US cine, RGB, 30 frames, 600x800
    Template {
        rel: "deid-data-0.0.20/deid_data__data__ultrasounds__ultrasound-multiframe.dcm",
        default: &[ExplicitLe, JpegBaseline, JpegLosslessSv1],
        quick: &[],
        full_only: true,
    },
];

/// Line heights (px) the set draws, 8 to 40 as the issue asks.
const HEIGHTS: [u32; 10] = [8, 10, 12, 14, 16, 20, 24, 28, 32, 40];

/// Low contrast: this fraction of the displayed range above (or below)
/// the local background: faint, but a person who windows can read it.
const LOW_CONTRAST: f32 = 0.06;

/// Builds the set into `root` (`root/in/*.dcm`, `root/manifest.json`) and
/// returns the manifest.
pub fn build(root: &Path, o: &BuildOptions) -> Result<Manifest, BuildError> {
    for tool in ["dcmconv", "dcmcjpeg", "dcmcjpls", "dcmcrle", "gdcmconv"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .map(|_| true)
            .unwrap_or(false);
        if !found {
            return Err(BuildError::Peer(tool));
        }
    }
    let indir = root.join("in");
    let work = root.join("work");
    for d in [&indir, &work] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::Io(format!("{:?}", e.kind())))?;
    }
    let selected: Vec<(usize, &Template)> = TEMPLATES
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.full_only || o.size == SetSize::Full)
        .filter(|(_, t)| o.size != SetSize::Quick || !t.quick.is_empty())
        .collect();
    // templates in parallel (one Tesseract per worker); each template has
    // its own generator, so the set does not depend on scheduling
    let per_template: Vec<Result<Built, BuildError>> = selected
        .par_iter()
        .map_init(annotation_ocr, |ocr, &(ti, t)| {
            let ocr = ocr.as_mut().map_err(|e| BuildError::Io(e.clone()))?;
            build_template(ti, t, o, ocr, &indir, &work)
        })
        .collect();
    let mut manifest = Manifest {
        version: 1,
        seed: o.seed,
        files: Vec::new(),
        skipped: Vec::new(),
    };
    for r in per_template {
        let (files, skipped) = r?;
        manifest.files.extend(files);
        manifest.skipped.extend(skipped);
    }
    let _ = std::fs::remove_dir_all(&work);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BuildError::Io(e.to_string()))?;
    veil_io::atomic::write_all(&root.join("manifest.json"), &json)
        .map_err(|e| BuildError::Io(format!("{:?}", e.kind())))?;
    Ok(manifest)
}

/// A Tesseract for finding a template's own annotations: scanner
/// annotations are crisp, high-contrast text, which the plain pass finds
/// (the local-contrast passes mostly add anatomy); 2x upscaling at most.
fn annotation_ocr() -> Result<veil_pixels::ocr::Ocr, String> {
    let mut ocr = veil_pixels::ocr::Ocr::new().map_err(|e| e.to_string())?;
    ocr.passes = veil_pixels::ocr::Passes {
        plain: true,
        bright: false,
        dark: false,
    };
    ocr.target_side = 1024;
    Ok(ocr)
}

/// One template's files and skipped cases.
type Built = (Vec<FileEntry>, Vec<String>);

/// Every case of one template.
fn build_template(
    ti: usize,
    t: &Template,
    o: &BuildOptions,
    ocr: &mut veil_pixels::ocr::Ocr,
    indir: &Path,
    work: &Path,
) -> Result<Built, BuildError> {
    let syntaxes: Vec<Syntax> = match o.size {
        SetSize::Quick => t.quick.to_vec(),
        SetSize::Default => t.default.to_vec(),
        SetSize::Full => Syntax::ALL.to_vec(),
    };
    // an independent stream per template (a SplitMix64 output as the new
    // state: streams seeded seed+i would be shifted copies of each other,
    // and repeated UIDs make a de-identifier see duplicate instances)
    let mut rng = Rng::new(Rng::new(o.seed.wrapping_add((ti as u64) << 32)).next_u64());
    let src = o.corpus.join(t.rel);
    let header =
        veil_io::read(&src).map_err(|e| BuildError::Template(t.rel.into(), e.to_string()))?;
    let mut base = decode(&src).map_err(|e| BuildError::Template(t.rel.into(), e))?;
    if o.size != SetSize::Full {
        base = crop(&base, 512, 4);
    }
    let existing = existing_text(&base, ocr);
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for (k, syn) in syntaxes.into_iter().enumerate() {
        if !syn.fits(&base) {
            continue;
        }
        let case = ti * 20 + k;
        let name = format!("c{case:03}_{}.dcm", syn.short());
        let c = Case {
            header: &header,
            base: &base,
            existing: &existing,
            syn,
            case,
            template: t.rel,
        };
        match plant_case(&c, &name, indir, work, &mut rng) {
            Ok(entry) => files.push(entry),
            Err(why) => skipped.push(format!("{} {}: {why}", t.rel, syn.short())),
        }
    }
    Ok((files, skipped))
}

/// The centre `max` x `max` region and the first `max_frames` frames:
/// CI-sized, still real pixels.
fn crop(p: &Pixels, max: u32, max_frames: u32) -> Pixels {
    let (w, h) = (p.cols.min(max), p.rows.min(max));
    let frames = p.frames.min(max_frames);
    if (w, h, frames) == (p.cols, p.rows, p.frames) {
        return p.clone();
    }
    // even offsets keep 4:2:2 pairs together
    let x0 = ((p.cols - w) / 2) & !1;
    let y0 = (p.rows - h) / 2;
    let mut data = Vec::with_capacity((w * h * p.spp * frames) as usize);
    for f in 0..frames {
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(p.at(f, x0 + x, y0 + y));
            }
        }
    }
    Pixels {
        cols: w,
        rows: h,
        frames,
        data,
        ..p.clone()
    }
}

/// The text the template already shows: word boxes Tesseract finds in
/// its first frame (contrast-stretched), read as it is and twice as large
/// (small screen fonts, such as an ultrasound's header, are read only
/// enlarged), padded by 3 pixels.
fn existing_text(p: &Pixels, ocr: &mut veil_pixels::ocr::Ocr) -> Vec<[u32; 4]> {
    let vals: Vec<f32> = (0..p.rows * p.cols)
        .map(|i| super::eval::look(p, 0, i % p.cols, i / p.cols))
        .collect();
    let mut sorted: Vec<f32> = vals.iter().step_by(5).copied().collect();
    sorted.sort_by(f32::total_cmp);
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    if hi <= lo {
        return Vec::new();
    }
    let img = veil_pixels::GrayImage::from_fn(p.cols, p.rows, |x, y| {
        let v = vals[(y * p.cols + x) as usize];
        image::Luma([((v - lo) / (hi - lo) * 255.0).round() as u8])
    });
    let big = image::imageops::resize(
        &img,
        2 * p.cols,
        2 * p.rows,
        image::imageops::FilterType::Triangle,
    );
    let halved = ocr
        .words(&big)
        .unwrap_or_default()
        .into_iter()
        .map(|mut w| {
            (w.left, w.top, w.width, w.height) = (
                w.left / 2,
                w.top / 2,
                w.width.div_ceil(2),
                w.height.div_ceil(2),
            );
            w
        });
    ocr.words(&img)
        .unwrap_or_default()
        .into_iter()
        .chain(halved)
        .filter(|w| {
            w.confidence >= 50.0
                && w.height >= 5
                && w.text.chars().filter(|c| c.is_ascii_alphanumeric()).count() >= 2
        })
        .map(|w| {
            let (x, y) = (w.left.saturating_sub(3), w.top.saturating_sub(3));
            [
                x,
                y,
                (w.width + 6).min(p.cols - x),
                (w.height + 6).min(p.rows - y),
            ]
        })
        .collect()
}

struct Case<'a> {
    header: &'a veil_io::DicomFile,
    base: &'a Pixels,
    existing: &'a [[u32; 4]],
    syn: Syntax,
    case: usize,
    template: &'a str,
}

fn plant_case(
    c: &Case,
    name: &str,
    indir: &Path,
    work: &Path,
    rng: &mut Rng,
) -> Result<FileEntry, String> {
    let Case {
        header,
        base,
        syn,
        case,
        template,
        ..
    } = *c;
    let id = Identity::random(rng);
    let study_date = format!(
        "{}{:02}{:02}",
        2012 + rng.below(12),
        1 + rng.below(12),
        1 + rng.below(28)
    );
    let mut px = base.clone();
    let lines = plant_lines(&mut px, &id, &study_date, case, c.existing, rng);
    px.settle_422();
    if lines.is_empty() {
        return Err("no line fits".into());
    }
    let burned = (case % 2 == 0).then(|| "YES".to_string());
    let ds = header_for(header, &px, &id, &study_date, burned.as_deref(), rng);
    let sop = ds.ascii(Tag(0x0008, 0x0018)).unwrap_or_default();
    let meta = WriteMeta {
        sop_class: ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
        sop_instance: sop,
    };
    let reference = work.join(format!("ref{case:03}.dcm"));
    veil_io::write_file(
        &reference,
        &meta,
        &veil_io::TsInfo::explicit_le(),
        &ds,
        &header.source,
    )
    .map_err(|e| e.to_string())?;
    let dest = indir.join(name);
    match syn.command(&reference, &work.join(name)) {
        None => std::fs::rename(&reference, &dest).map_err(|e| format!("{:?}", e.kind()))?,
        Some(mut c) => {
            let out = c.output().map_err(|e| format!("{:?}", e.kind()))?;
            if !out.status.success() {
                return Err(format!("peer exit {:?}", out.status.code()));
            }
            std::fs::rename(work.join(name), &dest).map_err(|e| format!("{:?}", e.kind()))?;
        }
    }
    // the set must decode with an independent decoder, unchanged in shape
    let back = decode(&dest).inspect_err(|_| {
        let _ = std::fs::remove_file(&dest);
    })?;
    if (back.cols, back.rows, back.frames) != (px.cols, px.rows, px.frames) {
        let _ = std::fs::remove_file(&dest);
        return Err("peer changed the image shape".into());
    }
    if !syn.lossy() && back.pi == px.pi && back.data != px.data {
        let _ = std::fs::remove_file(&dest);
        return Err("lossless peer changed stored values".into());
    }
    // every line must stand out in what a tool will be given (a lossy
    // peer may blur small or faint text into the background)
    for l in &lines {
        let f = l.frame.unwrap_or(0);
        if super::eval::standing_out(&back, f, l) < 0.5 {
            let _ = std::fs::remove_file(&dest);
            return Err(format!(
                "a {} px {} contrast line does not survive the encoder",
                l.px_height, l.contrast
            ));
        }
    }
    let written = veil_io::read(&dest).map_err(|e| e.to_string())?;
    let attr = |g, e| written.dataset.ascii(Tag(g, e)).unwrap_or_default();
    let pi = attr(0x0028, 0x0004);
    let name = format!(
        "c{case:03}_{}_{}.dcm",
        syn.short(),
        pi.to_lowercase().replace(' ', "-")
    );
    std::fs::rename(&dest, indir.join(&name)).map_err(|e| format!("{:?}", e.kind()))?;
    Ok(FileEntry {
        existing_text: c.existing.to_vec(),
        file: name,
        template: template.to_string(),
        modality: attr(0x0008, 0x0060),
        ts: syn.uid().into(),
        ts_name: syn.short().into(),
        lossy: syn.lossy(),
        pi,
        rows: px.rows,
        cols: px.cols,
        frames: px.frames,
        bits_allocated: px.bits_allocated,
        bits_stored: px.bits_stored,
        signed: px.signed,
        burned_in_annotation: burned,
        lines,
    })
}

fn text_el(tag: (u16, u16), vr: VR, v: &str) -> Element {
    Element::text(Tag(tag.0, tag.1), vr, v)
}

fn us(tag: (u16, u16), v: u16) -> Element {
    Element::bytes(Tag(tag.0, tag.1), VR::US, v.to_le_bytes().to_vec())
}

fn uid(rng: &mut Rng) -> String {
    let v = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) >> 2;
    format!("2.25.{v}")
}

/// The template's header with the planted identity, fresh UIDs, the new
/// pixel data and Burned In Annotation as chosen.
fn header_for(
    f: &veil_io::DicomFile,
    p: &Pixels,
    id: &Identity,
    study_date: &str,
    burned: Option<&str>,
    rng: &mut Rng,
) -> DataSet {
    let mut ds = f.dataset.clone();
    for t in [
        (0x0008, 0x0005), // character set: values below are ASCII
        (0x0028, 0x0106),
        (0x0028, 0x0107),
        (0x0028, 0x1050),
        (0x0028, 0x1051),
        (0x0028, 0x1055),
        (0x0028, 0x0301),
        (0x7FE0, 0x0010),
    ] {
        ds.remove(Tag(t.0, t.1));
    }
    let pn = format!("{}^{}", id.family, id.given);
    for (tag, vr, v) in [
        ((0x0010, 0x0010), VR::PN, pn.as_str()),
        ((0x0010, 0x0020), VR::LO, id.mrn.as_str()),
        ((0x0010, 0x0030), VR::DA, id.birth.as_str()),
        ((0x0008, 0x0020), VR::DA, study_date),
        ((0x0008, 0x0050), VR::SH, id.accession.as_str()),
        ((0x0008, 0x0080), VR::LO, id.institution.as_str()),
        ((0x0008, 0x0090), VR::PN, &format!("{}^JOHN", id.physician)),
    ] {
        ds.put(text_el(tag, vr, v));
    }
    for t in [(0x0020, 0x000D), (0x0020, 0x000E), (0x0008, 0x0018)] {
        ds.put(text_el(t, VR::UI, &uid(rng)));
    }
    if let Some(b) = burned {
        ds.put(text_el((0x0028, 0x0301), VR::CS, b));
    }
    ds.put(us((0x0028, 0x0010), p.rows as u16));
    ds.put(us((0x0028, 0x0011), p.cols as u16));
    if p.frames > 1 || ds.get(Tag(0x0028, 0x0008)).is_some() {
        ds.put(text_el((0x0028, 0x0008), VR::IS, &p.frames.to_string()));
    }
    if p.spp == 3 {
        ds.put(us((0x0028, 0x0006), 0));
    }
    let vr = if p.bits_allocated == 16 {
        VR::OW
    } else {
        VR::OB
    };
    ds.put(Element::bytes(Tag(0x7FE0, 0x0010), vr, p.to_native()));
    ds
}

fn us_date(d: &str) -> String {
    format!("{}/{}/{}", &d[4..6], &d[6..8], &d[0..4])
}

/// The text of line `i` of a case, its kind and whether the header holds
/// it.
fn line_text(
    id: &Identity,
    study: &str,
    case: usize,
    i: usize,
    rng: &mut Rng,
) -> (String, &'static str, bool) {
    match (case + i) % 6 {
        0 => (format!("{}, {}", id.family, id.given), "name", true),
        1 => (format!("MRN: {}", id.mrn), "mrn", true),
        2 => (format!("DOB {}", us_date(&id.birth)), "date", true),
        3 => (format!("{} {}", id.given, id.family), "name", true),
        4 => (
            // an ID the header does not hold: only its pattern gives it away
            format!("ID {}", 10_000_000 + rng.below(89_999_999)),
            "mrn",
            false,
        ),
        _ => {
            if rng.below(2) == 0 {
                (
                    format!("{}-{}-{}", &study[0..4], &study[4..6], &study[6..8]),
                    "date",
                    true,
                )
            } else {
                (
                    format!(
                        "{:02}.{:02}.{}",
                        1 + rng.below(28),
                        1 + rng.below(12),
                        1990 + rng.below(30)
                    ),
                    "date",
                    false,
                )
            }
        }
    }
}

/// Draws the case's lines into `p` and returns them.
fn plant_lines(
    p: &mut Pixels,
    id: &Identity,
    study: &str,
    case: usize,
    existing: &[[u32; 4]],
    rng: &mut Rng,
) -> Vec<Line> {
    let n = if p.rows.min(p.cols) < 160 { 2 } else { 5 };
    let slots = [
        "corner-tl",
        "corner-br",
        "mid",
        "band-bottom",
        "corner-tr",
        "band-top",
        "corner-bl",
        "mid-left",
        "mid-right",
    ];
    let mut taken: Vec<[u32; 4]> = existing.to_vec();
    let mut lines = Vec::new();
    for i in 0..n {
        let (text, kind, in_header) = line_text(id, study, case, i, rng);
        let mut px = HEIGHTS[(case * 3 + i * 7) % HEIGHTS.len()];
        px = px.min((p.rows / 6).max(8));
        let Ok(mut size) = veil_pixels::text::measure_text(&text, px as f32) else {
            continue;
        };
        while px > 8 && size.0 as f32 > p.cols as f32 * 0.9 {
            px -= 1;
            size = veil_pixels::text::measure_text(&text, px as f32).unwrap_or(size);
        }
        if size.0 + 4 > p.cols || size.1 + 4 > p.rows {
            continue;
        }
        let (w, h) = (size.0, size.1);
        let m = (p.cols.min(p.rows) / 50).max(2);
        let spot = |slot: &str| -> (u32, u32) {
            match slot {
                "corner-tl" => (m, m),
                "corner-tr" => (p.cols - w - m, m),
                "corner-bl" => (m, p.rows - h - m),
                "corner-br" => (p.cols - w - m, p.rows - h - m),
                "band-top" => ((p.cols - w) / 2, m),
                "band-bottom" => ((p.cols - w) / 2, p.rows - h - m),
                "mid-left" => ((p.cols / 4).saturating_sub(w / 2).max(m), p.rows / 3),
                "mid-right" => (
                    (p.cols * 3 / 4 - w / 2).min(p.cols - w - m),
                    p.rows * 2 / 3 - h / 2,
                ),
                _ => ((p.cols - w) / 2, (p.rows - h) / 2),
            }
        };
        let start = (case + i) % slots.len();
        let mut placed = None;
        for k in 0..slots.len() {
            let slot = slots[(start + k) % slots.len()];
            let (x, y) = spot(slot);
            let r = [x.saturating_sub(6), y.saturating_sub(6), w + 12, h + 12];
            if taken.iter().all(|t| !overlap(t, &r)) {
                placed = Some((slot, x, y, r));
                break;
            }
        }
        let Some((slot, x, y, r)) = placed else {
            continue;
        };
        let low = (case + i) % 3 == 1;
        let frame = if p.frames == 1 || i == 0 {
            None
        } else if i == 1 {
            Some(p.frames / 2)
        } else if i % 2 == 0 {
            None
        } else {
            Some(i as u32 % p.frames)
        };
        let line = Line {
            text,
            kind: kind.into(),
            in_header,
            frame,
            bbox: [0; 4],
            origin: [x, y],
            glyph_pixels: 0,
            px_height: px,
            contrast: if low { "low" } else { "high" }.into(),
            placement: slot.split('-').next().unwrap_or(slot).into(),
        };
        let glyphs = line_glyphs(&line, p.cols, p.rows);
        if glyphs.is_empty() {
            continue;
        }
        let (x0, y0) = glyphs
            .iter()
            .fold((u32::MAX, u32::MAX), |a, g| (a.0.min(g.0), a.1.min(g.1)));
        let (x1, y1) = glyphs
            .iter()
            .fold((0, 0), |a, g| (a.0.max(g.0), a.1.max(g.1)));
        let line = Line {
            bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
            glyph_pixels: glyphs.len() as u32,
            ..line
        };
        let frames: Vec<u32> = match frame {
            Some(f) => vec![f],
            None => (0..p.frames).collect(),
        };
        for f in frames {
            draw(p, f, &line, low);
        }
        taken.push(r);
        lines.push(line);
    }
    lines
}

fn overlap(a: &[u32; 4], b: &[u32; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// Paints a line's glyphs in frame `f`: high contrast at the far end of
/// the frame's range from the background around the line, low contrast
/// [`LOW_CONTRAST`] of the frame's displayed range away from it (both
/// measured as the evaluator measures them).
fn draw(p: &mut Pixels, f: u32, line: &Line, low: bool) {
    use super::eval::{look, ring_and_glyphs, scale};
    let (ring, glyphs) = ring_and_glyphs(line, p.cols, p.rows);
    let (lo_r, hi_r) = p.value_range();
    let mut around: Vec<f32> = ring.iter().map(|&(x, y)| look(p, f, x, y)).collect();
    around.sort_by(f32::total_cmp);
    let bg = around.get(around.len() / 2).copied().unwrap_or(0.0);
    let range = scale(p, f);
    if let Some(pal) = p.palette.clone() {
        let pick = (0..pal.luma.len() as i32)
            .map(|i| (i + pal.first, pal.luma[i as usize]))
            .filter(|&(v, _)| v >= lo_r && v <= hi_r);
        let v = if low {
            let d = LOW_CONTRAST * range.max(0.2);
            let target = if bg + d <= 1.0 { bg + d } else { bg - d };
            pick.filter(|&(_, l)| (l - bg).abs() >= 0.75 * d)
                .min_by(|a, b| (a.1 - target).abs().total_cmp(&(b.1 - target).abs()))
        } else {
            pick.max_by(|a, b| (a.1 - bg).abs().total_cmp(&(b.1 - bg).abs()))
        };
        let v = v.map(|x| x.0).unwrap_or(hi_r);
        for &(x, y) in &glyphs {
            p.at_mut(f, x, y)[0] = v;
        }
        return;
    }
    let bg_i = bg.round() as i32;
    let range_i = (range.round() as i32).max(8);
    let v = if low {
        let d = ((range_i as f32 * LOW_CONTRAST).round() as i32).max(2);
        if bg_i + d <= hi_r {
            bg_i + d
        } else {
            bg_i - d
        }
    } else {
        // the frame's extremes, or the representable ones if the frame's
        // are too close to the background
        let (mut fmin, mut fmax) = (i32::MAX, i32::MIN);
        for y in 0..p.rows {
            for x in 0..p.cols {
                let v = look(p, f, x, y).round() as i32;
                fmin = fmin.min(v);
                fmax = fmax.max(v);
            }
        }
        let v = if fmax - bg_i >= bg_i - fmin {
            fmax
        } else {
            fmin
        };
        if (v - bg_i).abs() < range_i / 3 {
            if bg_i - lo_r > hi_r - bg_i {
                lo_r
            } else {
                hi_r
            }
        } else {
            v
        }
    }
    .clamp(lo_r, hi_r);
    let ybr = p.pi.starts_with("YBR");
    let mid_chroma = (hi_r + 1) / 2;
    for &(x, y) in &glyphs {
        let s = p.at_mut(f, x, y);
        if s.len() == 3 && ybr {
            s.copy_from_slice(&[v, mid_chroma, mid_chroma]);
        } else {
            s.iter_mut().for_each(|c| *c = v);
        }
    }
}
