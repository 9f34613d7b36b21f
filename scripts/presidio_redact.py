#!/usr/bin/env python3
"""Runs Presidio's DicomImageRedactorEngine on every DICOM file of a folder.

    presidio_redact.py IN_DIR OUT_DIR MAP.json [--model DIR]

Writes OUT_DIR/<same name> for each input it redacts, and MAP.json in the
form `veil-plant text-eval --map` reads: {"outputs": {name: path},
"review": [], "errors": {name: exception class}, "seconds": ..., ...}.

Presidio needs a spaCy pipeline, and spaCy's trained English models are
not on PyPI. We give it a blank English pipeline saved to disk
(`spacy.blank("en")`, through NlpEngineProvider): this disables its NER,
so person names are found only through its DICOM-metadata deny list
(`use_metadata=True`, the default of `redact`), and IDs and dates through
its pattern recognizers. Tesseract (Debian tesseract-ocr) does the OCR.
Everything else is Presidio's default (fill "contrast", padding 25).

No file content or name is printed: only counts, seconds and exception
class names.
"""

import json
import sys
import time
from pathlib import Path


def blank_model(path: Path) -> Path:
    import spacy

    if not (path / "config.cfg").exists():
        spacy.blank("en").to_disk(path)
    return path


def engine(model: Path):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(model)}],
        }
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return DicomImageRedactorEngine(
        image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer)
    )


def take_option(args, name, default, conv):
    """Removes `name VALUE` from `args` and returns `conv(VALUE)`, or
    `default` when it is not there (shared with bench_ocr_presidio.py)."""
    if name not in args:
        return default
    i = args.index(name)
    value = conv(args[i + 1])
    del args[i : i + 2]
    return value


MODEL = Path("target/bench/presidio-blank-en")


def main() -> int:
    args = sys.argv[1:]
    model = take_option(args, "--model", MODEL, Path)
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    in_dir, out_dir, map_path = Path(args[0]), Path(args[1]), Path(args[2])
    out_dir.mkdir(parents=True, exist_ok=True)

    import logging
    import warnings

    import pydicom

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    t0 = time.monotonic()
    eng = engine(blank_model(model))
    setup = time.monotonic() - t0

    outputs, errors, frames = {}, {}, 0
    t1 = time.monotonic()
    for src in sorted(in_dir.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(src)
            frames += int(getattr(ds, "NumberOfFrames", 1) or 1)
            red = eng.redact(ds, use_metadata=True)
            dest = out_dir / src.name
            red.save_as(dest)
            outputs[src.name] = str(dest.resolve())
        except Exception as e:  # noqa: BLE001 - a tool failure is a result
            errors[src.name] = type(e).__name__
    seconds = time.monotonic() - t1

    result = {
        "tool": "presidio-image-redactor DicomImageRedactorEngine",
        "outputs": outputs,
        "review": [],
        "errors": errors,
        "files": len(outputs) + len(errors),
        "frames": frames,
        "seconds": seconds,
        "setup_seconds": setup,
    }
    map_path.write_text(json.dumps(result, indent=1))
    print(
        f"presidio: {len(outputs)} redacted, {len(errors)} errors, "
        f"{frames} frames in {seconds:.1f} s (setup {setup:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
