#!/usr/bin/env python3
"""Presidio's image redactor, frame by frame, on one multi-frame DICOM.

    bench_ocr_presidio.py FILE.dcm RESULT.json [--model DIR] [--max-frames N]

Why frame by frame: Presidio's DicomImageRedactorEngine does not take a
multi-frame object (it fails on the 3-D pixel array; the attempt is made
once here and its exception class recorded), so what Presidio would spend
on a cine is measured on its frames one at a time, as 2-D images:

- ``redact``: ``ImageRedactorEngine.redact(frame)``, Presidio's whole
  image path (Tesseract through pytesseract's ``image_to_data``, the
  analyzer on the words read, the boxes filled), with a blank spaCy
  English pipeline (spaCy's trained English models are not on PyPI; see
  presidio_redact.py): no NER, pattern recognizers only;
- ``ocr``: ``pytesseract.image_to_data`` alone on the same frames, which
  is Presidio's OCR call and the floor of any Presidio configuration.

Setup (spaCy, the analyzer, decoding the frames) is timed apart. No file
content or name is printed or written: counts, seconds, class names.
"""

import json
import sys
import time
from pathlib import Path


def main() -> int:
    from presidio_redact import MODEL, take_option

    args = sys.argv[1:]
    model = take_option(args, "--model", MODEL, Path)
    max_frames = take_option(args, "--max-frames", None, int)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, result_path = Path(args[0]), Path(args[1])

    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    import numpy as np
    import pydicom
    import pytesseract
    from PIL import Image
    from presidio_image_redactor import (
        DicomImageRedactorEngine,
        ImageAnalyzerEngine,
        ImageRedactorEngine,
    )
    from presidio_redact import blank_model, engine

    t0 = time.monotonic()
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    pi = str(ds.PhotometricInterpretation)
    if pi.startswith("YBR"):
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, pi, "RGB")
    if arr.ndim == (4 if int(ds.SamplesPerPixel) == 3 else 3):
        frames = [arr[i] for i in range(arr.shape[0])]
    else:
        frames = [arr]
    frames = frames[:max_frames]
    images = [Image.fromarray(np.ascontiguousarray(f).astype(np.uint8)) for f in frames]
    dicom_engine = engine(blank_model(model))
    image_engine = ImageRedactorEngine(
        image_analyzer_engine=ImageAnalyzerEngine(
            analyzer_engine=dicom_engine.image_analyzer_engine.analyzer_engine
        )
    )
    setup = time.monotonic() - t0

    # the DICOM engine on the whole object, as a user would call it
    dicom_error = None
    t1 = time.monotonic()
    try:
        dicom_engine.redact(ds, use_metadata=True)
    except Exception as e:  # noqa: BLE001 - a tool failure is a result
        dicom_error = type(e).__name__
    dicom_seconds = time.monotonic() - t1

    t2 = time.monotonic()
    for img in images:
        image_engine.redact(img, fill=(0, 0, 0))
    redact_seconds = time.monotonic() - t2

    t3 = time.monotonic()
    words = 0
    for img in images:
        d = pytesseract.image_to_data(img, output_type=pytesseract.Output.DICT)
        words += sum(1 for t in d["text"] if t.strip())
    ocr_seconds = time.monotonic() - t3

    n = len(images)
    h, w = images[0].size[1], images[0].size[0]
    result = {
        "frames": n,
        "rows": h,
        "cols": w,
        "mode": images[0].mode,
        "setup_seconds": setup,
        "dicom_engine_error": dicom_error,
        "dicom_engine_seconds": dicom_seconds,
        "redact_seconds": redact_seconds,
        "redact_fps": n / redact_seconds,
        "ocr_seconds": ocr_seconds,
        "ocr_fps": n / ocr_seconds,
        "ocr_words": words,
    }
    result_path.write_text(json.dumps(result, indent=1))
    print(
        f"presidio: {n} frames {w}x{h}: redact {redact_seconds:.1f} s "
        f"({n / redact_seconds:.2f} frames/s), image_to_data alone {ocr_seconds:.1f} s "
        f"({n / ocr_seconds:.2f} frames/s); DICOM engine on the object: "
        f"{dicom_error or 'ok'} after {dicom_seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
