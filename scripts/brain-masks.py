"""Independent brain and ear masks for grading `veil deface` (issue 21).

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

  sub-01_T1w_ears.nii.gz   the pinnae of both: per axial slice within the
  cranium_ct_ears.nii.gz   BET brain's heights, what a 10 mm opening of
                           the head's cross-section takes off (thin
                           protrusions) lateral of the BET brain; pieces
                           under 1 ml dropped. The head is the largest
                           object, so the CT's head holder is not in it.

Masks are uint8 (1 = brain or ear) on the input's grid, in its canonical (RAS)
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


def ears(src, brain_path, dst):
    img = nib.as_closest_canonical(nib.load(src))
    d = img.get_fdata(dtype=np.float32)
    zoom = img.header.get_zooms()[:3]
    brain = nib.load(brain_path).get_fdata() > 0
    if np.percentile(d, 1) < -500:  # CT: skin at -300 HU
        head = d > -300
    else:
        lo, hi = np.percentile(d, [2, 98])
        head = d > lo + 0.1 * (hi - lo)
    # the head is the largest object (a CT head holder is another)
    lab, n = ndi.label(ndi.binary_opening(head, iterations=2))
    big = lab == 1 + int(np.argmax(ndi.sum(np.ones_like(lab), lab, range(1, n + 1))))
    head &= ndi.binary_dilation(big, iterations=3)
    r = 10.0
    rx, ry = int(round(r / zoom[0])), int(round(r / zoom[1]))
    xx, yy = np.mgrid[-rx : rx + 1, -ry : ry + 1]
    disk = (xx * zoom[0]) ** 2 + (yy * zoom[1]) ** 2 <= r * r
    out = np.zeros_like(head)
    zs = np.where(brain.any(axis=(0, 1)))[0]
    for k in range(zs.min(), zs.max() + 1):
        h = ndi.binary_fill_holes(head[:, :, k])
        bx = np.where(brain[:, :, k].any(axis=1))[0]
        if not h.any() or len(bx) == 0:
            continue
        thin = h & ~ndi.binary_opening(h, structure=disk)
        thin[bx.min() : bx.max() + 1, :] = False  # lateral of the brain only
        out[:, :, k] = thin
    lab, n = ndi.label(out)
    ml = ndi.sum(out, lab, range(1, n + 1)) * np.prod(zoom) / 1000
    out = np.isin(lab, 1 + np.where(ml >= 1.0)[0])
    save(out, img.affine, dst)
    return out.sum() * np.prod(zoom) / 1000


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
    for src, brain, dst in [
        ("sub-01_T1w.nii.gz", "sub-01_T1w_bet.nii.gz", "sub-01_T1w_ears.nii.gz"),
        ("cranium_ct.nii", "cranium_ct_bet.nii.gz", "cranium_ct_ears.nii.gz"),
    ]:
        out = os.path.join(heads, dst)
        if not os.path.exists(out):
            ml = ears(os.path.join(heads, src), os.path.join(heads, brain), out)
            print(f"brain-masks: {dst}: {ml:.1f} ml", file=sys.stderr)


if __name__ == "__main__":
    main()
