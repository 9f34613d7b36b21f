#!/usr/bin/env bash
# Installs the Debian packages Veil needs to build and test, if missing:
#   build:  libtesseract-dev libleptonica-dev (OCR binding), libclang-dev clang
#           (its bindgen), pkg-config, cmake (CharLS, the JPEG-LS codec)
#   run:    tesseract-ocr tesseract-ocr-eng (OCR data), fonts-dejavu-core
#           (text rendering for planted test sets)
#   tests:  dicom3tools (dciodvfy), dcmtk (dcmdjpeg, dcmdrle, dcmdjpls, dcmconv:
#           a peer decoder for re-encoded pixel data), dcmtk and libgdcm-tools
#           (gdcmconv: peer encoders that write the burned-in text set in every
#           transfer syntax, veil-plant text-set); orthanc and
#           orthanc-dicomweb (the gateway's PACS and recipients, driven
#           over REST with curl); openjdk-17-jre-headless (pyspark's JVM, for
#           the Spark job's tests); postgresql is installed by scripts/pg.sh
set -euo pipefail
pkgs=(libtesseract-dev libleptonica-dev libclang-dev clang pkg-config cmake
    tesseract-ocr tesseract-ocr-eng fonts-dejavu-core dicom3tools dcmtk libgdcm-tools
    orthanc orthanc-dicomweb curl openjdk-17-jre-headless)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
