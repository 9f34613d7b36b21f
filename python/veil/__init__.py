"""Veil from Python: DICOM de-identification with the same bytes as ``veil deid``.

>>> import veil
>>> key = veil.Key.load("site.key")                      # doctest: +SKIP
>>> policy = veil.Policy(key, options=["clean-pixel-data"])  # doctest: +SKIP
>>> r = policy.deid_bytes(open("in.dcm", "rb").read())   # doctest: +SKIP
>>> r.outcome, r.name                                    # doctest: +SKIP

Every call releases the GIL while it works; a ``Policy`` can be shared by
many threads. Errors derive from :class:`VeilError` and never carry values
read from a file or the key. See docs/python.md.
"""

import os as _os

# Tesseract (the pixel options' OCR) reads each line on a team of OpenMP
# threads; with one OCR call per worker thread the teams oversubscribe the
# CPUs (see veil_pixels::ocr::limit_openmp_teams, which `veil` itself
# runs). libgomp reads the limit when it is loaded, with this module:
# the caller's own setting stands.
_os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from ._veil import (  # noqa: E402
    OUT_MARKER,
    REVIEW_INDEX,
    Inputs,
    KeyFileError,
    Key,
    Root,
    NotDicomError,
    Policy,
    PolicyError,
    RecipeError,
    Result,
    Site,
    SiteError,
    series_group,
    study_group,
    VeilError,
    __version__,
    explain,
    verify_bytes,
)

__all__ = [
    "Inputs",
    "Root",
    "OUT_MARKER",
    "REVIEW_INDEX",
    "Key",
    "Policy",
    "Result",
    "Site",
    "SiteError",
    "series_group",
    "study_group",
    "explain",
    "verify_bytes",
    "VeilError",
    "KeyFileError",
    "RecipeError",
    "PolicyError",
    "NotDicomError",
    "__version__",
]
