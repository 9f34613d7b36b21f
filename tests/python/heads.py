"""A real head as a DICOM MR series, for the defacing tests: a NIfTI-1
head from the fetched heads (scripts/fetch-heads.sh) written one slice per
file with pydicom (PyPI), positions and orientation from the NIfTI affine
(RAS+ to LPS). Written by the tests, not by Veil, so what Veil reads is
an ordinary series another tool made."""

import gzip
import os
import pathlib
import struct

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADS = pathlib.Path(os.environ.get("VEIL_HEADS", ROOT / "target/heads"))

DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64,
          256: np.int8, 512: np.uint16}


def read_nifti(path):
    """(data as float64 [i, j, k], 4x4 affine) of a NIfTI-1 file."""
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dim = struct.unpack_from("<8h", raw, 40)
    datatype = struct.unpack_from("<h", raw, 70)[0]
    pixdim = struct.unpack_from("<8f", raw, 76)
    vox_offset = int(struct.unpack_from("<f", raw, 108)[0])
    slope, inter = struct.unpack_from("<2f", raw, 112)
    sform_code = struct.unpack_from("<h", raw, 254)[0]
    nx, ny, nz = dim[1:4]
    data = np.frombuffer(raw, dtype=DTYPES[datatype], count=nx * ny * nz, offset=vox_offset)
    data = data.reshape((nx, ny, nz), order="F").astype(np.float64)
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * (slope or 1.0) + inter
    if sform_code > 0:
        rows = [struct.unpack_from("<4f", raw, o) for o in (280, 296, 312)]
        affine = np.array(rows + [(0, 0, 0, 1)], dtype=np.float64)
    else:
        affine = np.diag([pixdim[1], pixdim[2], pixdim[3], 1.0])
    return data, affine


def write_series(nifti, out_dir, uid, patient="HEAD^TEST", patient_id="HEAD-1"):
    """Writes the head as an int16 MR series in ``out_dir``; the files."""
    data, a = read_nifti(nifti)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lps = np.array([-1.0, -1.0, 1.0])
    cols = [a[:3, c] * lps for c in range(3)]
    spacing = [float(np.linalg.norm(c)) for c in cols]
    row_dir, col_dir = cols[0] / spacing[0], cols[1] / spacing[1]
    nx, ny, nz = data.shape
    files = []
    for k in range(nz):
        pos = (a @ np.array([0.0, 0.0, k, 1.0]))[:3] * lps
        px = np.clip(np.rint(data[:, :, k].T), -32768, 32767).astype("<i2")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = "%s.%d" % (uid, k + 1)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientName = patient
        ds.PatientID = patient_id
        ds.StudyInstanceUID = uid + ".100"
        ds.SeriesInstanceUID = uid + ".200"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ["%.6f" % x for x in pos]
        ds.ImageOrientationPatient = ["%.6f" % x for x in list(row_dir) + list(col_dir)]
        ds.PixelSpacing = ["%.6f" % spacing[1], "%.6f" % spacing[0]]
        ds.SliceThickness = "%.6f" % spacing[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.PixelData = px.tobytes()
        f = out_dir / ("s%04d.dcm" % ((k * 7919) % 10007))
        ds.save_as(f, enforce_file_format=True)
        files.append(f)
    return files
