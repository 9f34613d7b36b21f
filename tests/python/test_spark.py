"""Issue 20: `python -m veil.spark` and `veil deid` with `s3://` locations
(run by scripts/test-python.sh; Spark from PyPI's pyspark on Debian's
openjdk-17; S3 from a SeaweedFS that scripts/seaweedfs.sh started, whose
settings are in the environment).

- Determinism: the Spark job in `local[2]` gives OUT and review trees
  byte-identical to `veil deid --jobs 2` with the same key (sha256 of every
  file by relative path; the review index compared by its items, since it
  names OUT's own path), without and with the pixel options. The input
  set holds a duplicate instance (a copy of one input).
- S3: inputs and outputs in SeaweedFS buckets, through `veil deid` and
  through the Spark job: the same objects as the local run. A `veil deid`
  and a Spark job killed midway and run again end with the same objects
  and nothing left in staging.
"""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

import heads
import veil
from test_api import PIXELS, VEIL_BIN, corpus_files

N = int(os.environ.get("VEIL_SPARK_FILES", "24"))


def tree(root):
    """{relative path: sha256} of every file below a local folder."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def objects(location):
    """{key: sha256} of every object below an S3 prefix (bookkeeping
    objects too: read through Root)."""
    src = veil.Inputs(location)
    out = {k: hashlib.sha256(src.read(k)).hexdigest() for k, _ in src.list()}
    root = veil.Root(location)
    for name in (veil.OUT_MARKER, veil.REVIEW_INDEX):
        b = root.read(name)
        if b is not None:
            out[name] = hashlib.sha256(b).hexdigest()
    return out


def review_items(root):
    b = veil.Root(str(root)).read(veil.REVIEW_INDEX)
    return json.loads(b)["items"] if b else {}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("spark-in")
    files = corpus_files(N)
    for i, f in enumerate(files):
        shutil.copy(f, d / ("%03d.dcm" % i))
    # the same instance twice: released once, the first in input order
    shutil.copy(files[1], d / "001b.dcm")
    return d


@pytest.fixture(scope="module")
def head_inputs(tmp_path_factory, inputs):
    """A few corpus files and a real head (ch2) as an MR series."""
    src = heads.HEADS / "ch2.nii.gz"
    if not src.is_file():
        if os.environ.get("VEIL_REQUIRE_HEADS"):
            pytest.fail("VEIL_REQUIRE_HEADS is set but %s is missing" % src)
        pytest.skip("no heads (scripts/fetch-heads.sh)")
    d = tmp_path_factory.mktemp("spark-head-in")
    for f in sorted(inputs.iterdir())[:8]:
        shutil.copy(f, d / f.name)
    n = len(heads.write_series(src, d / "head", "2.25.2026120700"))
    return d, n


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("spark-key") / "site.key"
    subprocess.run([str(VEIL_BIN), "key", "new", str(p)], check=True, capture_output=True)
    return p


def veil_deid(*args):
    p = subprocess.run([str(VEIL_BIN), "-q", "deid", *map(str, args)],
                       capture_output=True, text=True)
    assert p.returncode in (0, 1), p.stderr
    return p


def spark(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "veil.spark", "--master", "local[2]",
                        *map(str, args)], capture_output=True, text=True)
    if check:
        assert p.returncode in (0, 1), p.stderr[-3000:]
    return p


def test_spark_defaces_and_writes_dicomdir_as_veil_deid(head_inputs, key_file, tmp_path):
    """The series stage (defacing, Clean Recognizable Visual Features) and
    the DICOMDIR: the same OUT, DICOMDIR included, as veil deid."""
    d, slices = head_inputs
    opts = ["--option", "clean-recognizable-visual-features", "--dicomdir"]
    veil_deid(d, "--out", tmp_path / "cli", "--jobs", 2, "--key", key_file, *opts)
    spark("--key", key_file, *opts, "--input", d, "--out", tmp_path / "spark",
          "--report", tmp_path / "report.json")
    a, b = tree(tmp_path / "cli"), tree(tmp_path / "spark")
    assert a == b, set(a) ^ set(b)
    assert "DICOMDIR" in a
    ra = {k: v for k, v in tree(tmp_path / "cli.review").items() if k.endswith(".dcm")}
    rb = {k: v for k, v in tree(tmp_path / "spark.review").items() if k.endswith(".dcm")}
    assert ra == rb, set(ra) ^ set(rb)
    assert review_items(tmp_path / "cli.review") == review_items(tmp_path / "spark.review")
    # the head was defaced (code 113102 in each slice's method codes), not
    # sent to review
    defaced = [p for p in (tmp_path / "spark").rglob("*")
               if p.is_file() and b"113102" in p.read_bytes()]
    assert len(defaced) == slices, (len(defaced), slices)


@pytest.mark.parametrize("options", [[], PIXELS], ids=["header", "pixels"])
def test_spark_equals_veil_deid(inputs, key_file, tmp_path, options):
    opts = [a for o in options for a in ("--option", o)]
    veil_deid(inputs, "--out", tmp_path / "cli", "--jobs", 2, "--key", key_file, *opts,
              "--report", tmp_path / "cli.json")
    p = spark("--key", key_file, *opts, "--input", inputs, "--out", tmp_path / "spark",
              "--report", tmp_path / "report.json")
    a, b = tree(tmp_path / "cli"), tree(tmp_path / "spark")
    assert a == b, set(a) ^ set(b)
    assert len(a) > 5
    ra = {k: v for k, v in tree(tmp_path / "cli.review").items() if k.endswith(".dcm")}
    rb = tree(tmp_path / "spark.review")
    assert ra == {k: v for k, v in rb.items() if k.endswith(".dcm")}, set(ra) ^ set(rb)
    assert review_items(tmp_path / "cli.review") == review_items(tmp_path / "spark.review")
    # one outcome row per input, in input order, the duplicate named
    rows = [json.loads(line) for f in sorted((tmp_path / "report.json").glob("part-*"))
            for line in f.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(N + 1))
    # the same outcome for every input as veil deid's report
    cli = json.loads((tmp_path / "cli.json").read_text())["files"]
    assert sorted((f["input"], f["status"]) for f in cli) == sorted(
        (r["input"], r["outcome"]) for r in rows)
    assert {r["input"].rsplit("/", 1)[-1]: r["outcome"] for r in rows}["001b.dcm"] == \
        "duplicate-instance"
    assert sum(r["outcome"] == "written" for r in rows) == len(
        [k for k in a if k != veil.OUT_MARKER])
    assert "veil spark:" in p.stderr


@pytest.fixture(scope="module")
def s3(inputs):
    if not os.environ.get("VEIL_TEST_S3_ENDPOINT"):
        if os.environ.get("VEIL_REQUIRE_S3"):
            pytest.fail("VEIL_REQUIRE_S3 is set but VEIL_TEST_S3_ENDPOINT is not")
        pytest.skip("no S3 server (scripts/seaweedfs.sh start)")
    bucket = os.environ.get("VEIL_TEST_S3_BUCKET", "veil-test")
    base = "s3://%s/py-%s" % (bucket, uuid.uuid4().hex[:12])
    root = veil.Root(base + "/in")
    for f in sorted(inputs.iterdir()):
        root.write(f.name, f.read_bytes())
    return base


def test_s3_in_and_out_through_veil_deid_and_spark(inputs, key_file, tmp_path, s3):
    veil_deid(inputs, "--out", tmp_path / "local", "--jobs", 2, "--key", key_file)
    want = tree(tmp_path / "local")
    # veil deid: S3 in, S3 out; then again: everything already done
    veil_deid(s3 + "/in", "--out", s3 + "/cli", "--jobs", 2, "--key", key_file)
    assert objects(s3 + "/cli") == want
    p = veil_deid(s3 + "/in", "--out", s3 + "/cli", "--jobs", 2, "--key", key_file)
    assert " 0 written" in p.stderr + p.stdout and "already done" in p.stderr + p.stdout
    # local in, S3 out; S3 in, local out
    veil_deid(inputs, "--out", s3 + "/cli2", "--jobs", 2, "--key", key_file)
    assert objects(s3 + "/cli2") == want
    veil_deid(s3 + "/in", "--out", tmp_path / "back", "--jobs", 2, "--key", key_file)
    assert tree(tmp_path / "back") == want
    # the Spark job, S3 to S3, with its report as an object
    spark("--key", key_file, "--input", s3 + "/in", "--out", s3 + "/spark",
          "--report", s3 + "/report.json")
    assert objects(s3 + "/spark") == want
    rows = veil.Root(s3).read("report.json").decode().splitlines()
    assert len(rows) == N + 1


def kill_midway(cmd, watch, env=None):
    """Starts `cmd`, kills it (SIGKILL) once `watch()` is true or after
    60 s; returns whether it was still running when killed."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while p.poll() is None and not watch() and time.monotonic() < deadline:
        time.sleep(0.05)
    running = p.poll() is None
    if running:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    return running


@pytest.fixture(scope="module")
def many(tmp_path_factory, s3):
    """More inputs than one chunk of `veil deid` on S3 (64), so that a run
    can be killed between its first outputs and its last: a local folder
    and its copy in S3."""
    d = tmp_path_factory.mktemp("spark-many")
    for i, f in enumerate(corpus_files(KILL_FILES)):
        shutil.copy(f, d / ("%03d.dcm" % i))
    root = veil.Root(s3 + "/many")
    for f in sorted(d.iterdir()):
        root.write(f.name, f.read_bytes())
    return d


KILL_FILES = 240


def test_a_killed_run_rerun_ends_with_the_same_objects(many, key_file, tmp_path, s3):
    veil_deid(many, "--out", tmp_path / "local", "--jobs", 2, "--key", key_file)
    want = tree(tmp_path / "local")
    n_out = len(want)

    def some(loc):
        return lambda: len(veil.Inputs(loc).list()) >= 1

    # veil deid, killed once some outputs exist (after its first chunk),
    # then run again
    assert kill_midway([str(VEIL_BIN), "-q", "deid", s3 + "/many", "--out", s3 + "/k1",
                        "--jobs", "1", "--key", str(key_file)], some(s3 + "/k1"))
    assert 0 < len(objects(s3 + "/k1")) < n_out, "killed midway"
    veil_deid(s3 + "/many", "--out", s3 + "/k1", "--jobs", 2, "--key", key_file)
    assert objects(s3 + "/k1") == want
    # the Spark job, killed once its staging holds something, then again
    assert kill_midway([sys.executable, "-m", "veil.spark", "--master", "local[2]", "--key",
                        str(key_file), "--input", s3 + "/many", "--out", s3 + "/k2"],
                       some(s3 + "/k2"))
    assert [k for k in objects(s3 + "/k2") if ".veil-staging" in k], "killed in stage 1"
    spark("--key", key_file, "--input", s3 + "/many", "--out", s3 + "/k2")
    got = objects(s3 + "/k2")
    assert got == want, set(got) ^ set(want)
    assert not [k for k in got if ".veil-staging" in k]
    assert not [k for k in objects(s3 + "/k2.review") if ".veil-staging" in k]
    assert len(got) == n_out
