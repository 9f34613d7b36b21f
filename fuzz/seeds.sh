#!/usr/bin/env bash
# Builds the fuzzing seed corpora in fuzz/corpus/<target>/ (not committed):
# small files of the real-file corpus (VEIL_CORPUS, default
# target/corpus/base from scripts/fetch-corpus.sh) for the DICOM targets,
# and small generated files for every target: nested sequences, a deflated
# data set, RLE and JPEG frames, NIfTI-1 headers (plain, gzip, bad
# vox_offset) and FHIR Consents (resource, array, Bundle). The committed
# minimized crash inputs in fuzz/regressions/<target>/ are added too.
# usage: fuzz/seeds.sh [MAX_BYTES]   (corpus files up to MAX_BYTES, default 16384)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
max=${1:-16384}
corpus=${VEIL_CORPUS:-../target/corpus/base}
targets=(dicom_read deid_engine pixel_decode nifti_read verify_nifti fhir_import dimse_pdu stow_part)
for t in "${targets[@]}"; do mkdir -p "corpus/$t"; done

if [ -d "$corpus" ]; then
  n=0
  while IFS= read -r -d '' f; do
    h=$(sha1sum "$f" | cut -c1-16)
    cp "$f" "corpus/dicom_read/$h"
    cp "$f" "corpus/pixel_decode/$h"
    # deid_engine: first byte picks the profile options
    { printf '\x00'; cat "$f"; } > "corpus/deid_engine/$h"
    # a STOW-RS part is a Part 10 file; a C-STORE data set head (pick 2)
    cp "$f" "corpus/stow_part/$h"
    { printf '\x52'; head -c 4096 "$f"; } > "corpus/dimse_pdu/$h"
    n=$((n + 1))
  done < <(find "$corpus" -type f -size -"$((max + 1))"c -print0 | sort -z)
  echo "seeds: $n corpus files up to $max bytes"
else
  echo "seeds: no corpus at $corpus (scripts/fetch-corpus.sh); generated seeds only"
fi

python3 - <<'PY'
import gzip, json, os, struct, zlib

def el(g, e, vr, v):
    if len(v) % 2:
        v += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH", g, e) + vr + struct.pack("<H", len(v)) + v

def long_el(g, e, vr, n):
    return struct.pack("<HH", g, e) + vr + b"\0\0" + struct.pack("<I", n)

def meta(ts):
    return b"\0" * 128 + b"DICM" + el(2, 0x10, b"UI", ts.encode())

ident = el(8, 0x16, b"UI", b"1.2.840.10008.5.1.4.1.1.7") + el(8, 0x18, b"UI", b"1.2.3.4")
ELE = "1.2.840.10008.1.2.1"

def put(target, name, data):
    with open(f"corpus/{target}/gen-{name}", "wb") as f:
        f.write(data)

def dicom(name, data, pixels=False):
    for t in ["dicom_read", "deid_engine"] + (["pixel_decode"] if pixels else []):
        put(t, name, (b"\0" if t == "deid_engine" else b"") + data)

# nested undefined-length sequences, 70 levels (past the limit of 64)
seq = long_el(0x40, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
dicom("nested", meta(ELE) + ident + seq * 70 + end * 70)
# a deflated data set with a name and a private OB
ds = ident + el(0x10, 0x10, b"PN", b"DOE^JANE") + el(9, 0x10, b"LO", b"VEIL") + long_el(9, 0x1010, b"OB", 64) + b"\0" * 64
z = zlib.compressobj(9, zlib.DEFLATED, -15)
dicom("deflated", meta("1.2.840.10008.1.2.1.99") + z.compress(ds) + z.flush())
# an implicit VR data set without meta, holding a UN sequence (CP-246)
dicom("implicit", struct.pack("<HHI", 8, 0x16, 26) + b"1.2.840.10008.5.1.4.1.1.7\0" + struct.pack("<HHI", 8, 0x18, 8) + b"1.2.3.4\0")

def image(ts, rows, cols, frag, spp=1, bits=8, pi=b"MONOCHROME2 "):
    b = meta(ts) + ident
    b += el(0x28, 2, b"US", struct.pack("<H", spp)) + el(0x28, 4, b"CS", pi)
    b += el(0x28, 0x10, b"US", struct.pack("<H", rows)) + el(0x28, 0x11, b"US", struct.pack("<H", cols))
    for e, v in [(0x100, bits), (0x101, bits), (0x102, bits - 1), (0x103, 0)]:
        b += el(0x28, e, b"US", struct.pack("<H", v))
    if len(frag) % 2:
        frag += b"\0"
    b += long_el(0x7FE0, 0x10, b"OB", 0xFFFFFFFF)
    b += struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    b += struct.pack("<HHI", 0xFFFE, 0xE000, len(frag)) + frag
    return b + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)

rle = struct.pack("<16I", 1, 64, *([0] * 14)) + bytes([0xF1, 7])
dicom("rle", image("1.2.840.10008.1.2.5", 4, 4, rle), pixels=True)
jpeg = bytes([0xFF, 0xD8, 0xFF, 0xFE, 0, 6]) + b"NAME" + bytes([0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0, 0xFF, 0xD9])
dicom("jpeg", image("1.2.840.10008.1.2.4.50", 8, 8, jpeg), pixels=True)
j2k = bytes([0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0]) + struct.pack(">IIIIIIIIH", 8, 8, 0, 0, 8, 8, 0, 0, 1) + bytes([7, 1, 1, 0xFF, 0xD9])
dicom("j2k", image("1.2.840.10008.1.2.4.90", 8, 8, j2k), pixels=True)
native = meta(ELE) + ident
for e, v in [(2, 1), (0x10, 4), (0x11, 4), (0x100, 16), (0x101, 12), (0x102, 11), (0x103, 1)]:
    native += el(0x28, e, b"US", struct.pack("<H", v))
native += el(0x28, 4, b"CS", b"MONOCHROME1 ") + long_el(0x7FE0, 0x10, b"OW", 32) + bytes(range(32))
dicom("native", native, pixels=True)

def nifti(dims=(4, 3, 2), datatype=16, bitpix=32, vox_offset=352.0, data=None):
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<fff", h, 108, vox_offset, 1.0, 0.0)
    struct.pack_into("<h", h, 254, 1)
    struct.pack_into("<4f", h, 280, 1, 0, 0, 0)
    struct.pack_into("<4f", h, 296, 0, 1, 0, 0)
    struct.pack_into("<4f", h, 312, 0, 0, 1, 0)
    h[344:348] = b"n+1\0"
    n = dims[0] * dims[1] * dims[2] * bitpix // 8
    return bytes(h) + b"\0" * 4 + (data if data is not None else bytes(i % 251 for i in range(n)))

put("nifti_read", "float", nifti())
put("nifti_read", "uint8", nifti(datatype=2, bitpix=8))
put("nifti_read", "int16", nifti(datatype=4, bitpix=16))
put("nifti_read", "gz", gzip.compress(nifti(datatype=512, bitpix=16)))
put("nifti_read", "bad-offset", nifti(vox_offset=3.0))
put("nifti_read", "huge-offset", nifti(vox_offset=1e20))
# verify --faces' own reader gets the same seeds
for name in ("float", "uint8", "int16", "gz", "bad-offset", "huge-offset"):
    with open(os.path.join("corpus", "nifti_read", "gen-" + name), "rb") as f:
        put("verify_nifti", name, f.read())

consent = {
    "resourceType": "Consent", "id": "c1", "status": "active",
    "subject": {"identifier": {"system": "urn:mrn", "value": "123"}},
    "dateTime": "2024-01-02",
    "provision": {"type": "deny", "period": {"start": "2024-01-01"},
                  "actor": [{"reference": {"reference": "Organization/r1"}}],
                  "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}],
                  "data": [{"meaning": "related", "reference": {"reference": "ImagingStudy/1.2.3"}}],
                  "provision": [{"type": "permit"}]},
}
put("fhir_import", "consent.json", json.dumps(consent).encode())
put("fhir_import", "array.json", json.dumps([consent, dict(consent, id="c2", status="inactive")]).encode())
put("fhir_import", "bundle.json", json.dumps({"resourceType": "Bundle", "type": "collection",
    "entry": [{"resource": consent}, {"resource": dict(consent, id=None)}]}).encode())
put("fhir_import", "r5.json", json.dumps(dict(consent, decision="deny", provision={"actor": []})).encode())
put("fhir_import", "deep.json", ("[" * 200 + "]" * 200).encode())
PY

if [ -d regressions ]; then
  for t in "${targets[@]}"; do
    [ -d "regressions/$t" ] && cp regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
  done
fi
for t in "${targets[@]}"; do echo "seeds: $t $(ls "corpus/$t" | wc -l) files"; done

# DICOM upper layer: an A-ASSOCIATE-RQ, a P-DATA-TF carrying a C-ECHO-RQ
# command set, A-RELEASE-RQ and A-ABORT (pick 0), and command sets (pick 1)
python3 - <<'PY'
import struct
def item(t, body):
    return struct.pack(">BBH", t, 0, len(body)) + body
def cmd_el(e, vr_bytes):
    return struct.pack("<HHI", 0, e, len(vr_bytes)) + vr_bytes
echo = b"1.2.840.10008.1.1\0"
els = cmd_el(0x0002, echo) + cmd_el(0x0100, struct.pack("<H", 0x0030)) + \
      cmd_el(0x0110, struct.pack("<H", 1)) + cmd_el(0x0800, struct.pack("<H", 0x0101))
cmd = cmd_el(0x0000, struct.pack("<I", len(els))) + els
app = item(0x10, b"1.2.840.10008.3.1.1.1")
pc = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, echo.rstrip(b"\0")) + item(0x40, b"1.2.840.10008.1.2"))
ui = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
rq_body = struct.pack(">HH", 1, 0) + b"VEIL_ACME".ljust(16) + b"PACS".ljust(16) + bytes(32) + app + pc + ui
assoc = struct.pack(">BBI", 1, 0, len(rq_body)) + rq_body
pdv = struct.pack(">IBB", len(cmd) + 2, 1, 0x03) + cmd
pdata = struct.pack(">BBI", 4, 0, len(pdv)) + pdv
release = struct.pack(">BBI", 5, 0, 4) + bytes(4)
abort = struct.pack(">BBI", 7, 0, 4) + bytes(4)
seeds = {"assoc": b"\0" + assoc, "pdata": b"\0" + pdata, "release": b"\0" + release,
         "abort": b"\0" + abort, "all": b"\0" + assoc + pdata + release, "cmd": b"\1" + cmd}
for name, data in seeds.items():
    with open(f"corpus/dimse_pdu/gen-{name}", "wb") as f:
        f.write(data)
PY

