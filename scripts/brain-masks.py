"""Independent brain masks for grading `veil deface` (issue 21).

Veil's defacer finds the brain with its own method, so a test that counts
brain voxels against Veil's own mask proves little. These masks come from
a different, published method: FSL BET (Smith 2002, surface deformation),
as re-implemented in Python by the `brainextractor` package (PyPI, MIT).
Nothing here uses Veil.

    python brain-masks.py HEADS_DIR

writes, next to the heads fetched by scripts/fetch-heads.sh:

  sub-01_T1w_bet.nii.gz    the real subject's T1w. As in FSL's own
                           pipeline, the field of view is first cut to the
                           170 mm below the top of the head (robustfov):
                           BET on the uncut image follows the neck down
                           (2130 ml).
  cranium_ct_bet.nii.gz    the head CT, by Muschelli et al. 2015's CT
                           recipe: window 0..100 HU, Gaussian smoothing
                           (sigma 1 mm), BET with a low fractional
                           threshold, holes filled. Their f = 0.01 is for
                           FSL's binary; with this re-implementation 0.01
                           grows into the face (2368 ml) and 0.1 into the
                           nasopharynx in front of the clivus (1676 ml,
                           slices checked by hand); 0.3 (1365 ml) stays
                           inside the skull (docs/deface.md).

Masks are uint8 (1 = brain) on the input's grid, in its canonical (RAS)
orientation; the test reads them through their affine. Existing outputs
are kept (delete them to recompute).
"""

import contextlib
import warnings
import io
import os
import sys

import nibabel as nib
import numpy as np
from brainextractor import BrainExtractor
from scipy import ndimage as ndi


def bet(img, bt):
    # brainextractor prints every iteration; keep the test log readable
    # (and warns that the CT's voxels are not cubes: BET's radii are in
    # mm, and the 1.5 mm slices are fine for them)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        b = BrainExtractor(img=img, bt=bt)
        b.run()
        return b.compute_mask() > 0


def save(mask, affine, path):
    tmp = path + ".tmp.nii.gz"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), tmp)
    os.replace(tmp, path)


def t1w(src, dst):
    img = nib.as_closest_canonical(nib.load(src))
    d = img.get_fdata(dtype=np.float32)
    zoom = img.header.get_zooms()[:3]
    lo, hi = np.percentile(d, [2, 98])
    rows = np.where((d > lo + 0.1 * (hi - lo)).sum(axis=(0, 1)) > 100)[0]
    top = int(rows.max())
    bottom = max(0, int(top - 170 / zoom[2]))
    full = np.zeros(d.shape, bool)
    full[:, :, bottom : top + 1] = bet(img.slicer[:, :, bottom : top + 1], 0.5)
    save(full, img.affine, dst)
    return full.sum() * np.prod(zoom) / 1000


def ct(src, dst, bt=0.3):
    img = nib.as_closest_canonical(nib.load(src))
    d = img.get_fdata(dtype=np.float32)
    zoom = img.header.get_zooms()[:3]
    w = np.where((d >= 0) & (d <= 100), d, 0).astype(np.float32)
    w = ndi.gaussian_filter(w, sigma=[1 / z for z in zoom])
    m = ndi.binary_fill_holes(bet(nib.Nifti1Image(w, img.affine, img.header), bt))
    save(m, img.affine, dst)
    return m.sum() * np.prod(zoom) / 1000


def main():
    heads = sys.argv[1]
    jobs = [
        (t1w, "sub-01_T1w.nii.gz", "sub-01_T1w_bet.nii.gz"),
        (ct, "cranium_ct.nii", "cranium_ct_bet.nii.gz"),
    ]
    for make, src, dst in jobs:
        out = os.path.join(heads, dst)
        if os.path.exists(out):
            continue
        ml = make(os.path.join(heads, src), out)
        print(f"brain-masks: {dst}: {ml:.0f} ml", file=sys.stderr)


if __name__ == "__main__":
    main()
