"""Tests of the Python package `veil` (run by scripts/test-python.sh).

The determinism tests compare `Policy.deid_bytes` with the files the
`veil deid` binary writes (VEIL_BIN, default target/debug/veil) for the
same corpus files (VEIL_CORPUS, default target/corpus/base), by relative
name and sha256, without and with the pixel options.
"""

import hashlib
import os
import pathlib
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import veil

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = pathlib.Path(os.environ.get("VEIL_CORPUS", ROOT / "target/corpus/base"))
VEIL_BIN = pathlib.Path(os.environ.get("VEIL_BIN", ROOT / "target/debug/veil"))
PIXELS = ["clean-pixel-data", "clean-graphics"]
N_FILES = int(os.environ.get("VEIL_PY_FILES", "20"))


def sha(b):
    return hashlib.sha256(b).hexdigest()


def corpus_files(n=N_FILES, max_size=2_000_000):
    """n DICOM files of the corpus, spread over its sources, small first."""
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS} (scripts/fetch-corpus.sh)")
    files = sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.stat().st_size <= max_size and p.read_bytes()[128:132] == b"DICM"
    )
    if len(files) <= n:
        return files
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


@pytest.fixture(scope="session")
def key_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("key") / "site.key"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    return p


@pytest.fixture(scope="session")
def key(key_path):
    return veil.Key.load(key_path)


@pytest.fixture(scope="session")
def policy(key):
    return veil.Policy(key)


@pytest.fixture(scope="session")
def files():
    fs = corpus_files()
    assert fs, "no DICOM files in the corpus"
    return fs


# --- each function ---------------------------------------------------------


def test_version_and_stubs():
    assert veil.__version__
    pkg = pathlib.Path(veil.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_veil.pyi").exists()
    assert veil.Policy.deid_bytes.__doc__


def test_key_load_repr_has_no_key(key, key_path):
    secret = key_path.read_text().strip()
    assert secret not in repr(key)
    assert key.id in repr(key)


def test_key_group_readable_refused(tmp_path):
    p = tmp_path / "loose.key"
    p.write_text(os.urandom(32).hex())
    os.chmod(p, 0o644)
    with pytest.raises(veil.KeyFileError) as e:
        veil.Key.load(p)
    assert "644" in str(e.value)
    assert p.read_text() not in str(e.value)
    assert isinstance(e.value, veil.VeilError)


def test_key_bad_format(tmp_path):
    p = tmp_path / "bad.key"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(veil.KeyFileError):
        veil.Key.load(p)


def test_bad_recipe(key, tmp_path):
    with pytest.raises(veil.RecipeError):
        veil.Policy(key, recipe='name = "x"\nstirct = true\n')
    with pytest.raises(veil.RecipeError):
        veil.Policy(key, recipe=tmp_path / "missing.toml")


def test_recipe_as_text_and_path(key, tmp_path, files):
    text = 'name = "site"\nversion = "1"\n'
    p = tmp_path / "r.toml"
    p.write_text(text)
    data = files[0].read_bytes()
    a = veil.Policy(key, recipe=text).deid_bytes(data)
    b = veil.Policy(key, recipe=str(p)).deid_bytes(data)
    assert a.output == b.output and a.name == b.name


def test_unknown_option(key):
    with pytest.raises(veil.PolicyError):
        veil.Policy(key, options=["no-such-option"])


def test_options(key):
    p = veil.Policy(key, options=["retain-long-modified-dates"] + PIXELS)
    assert set(PIXELS) <= set(p.options)


def test_not_dicom(policy, key):
    r = policy.deid_bytes(b"hello, not DICOM")
    assert r.outcome == "not-dicom" and r.output is None and r.name is None
    with pytest.raises(veil.NotDicomError):
        veil.explain(b"hello", policy)
    with pytest.raises(veil.NotDicomError):
        veil.verify_bytes(b"x" * 10, source=b"hello")


def test_deid_bytes(policy, files):
    data = files[0].read_bytes()
    r = policy.deid_bytes(data)
    assert r.outcome in ("written", "review")
    assert r.output[128:132] == b"DICM"
    parts = r.name.split("/")
    assert len(parts) == 4 and parts[3].endswith(".dcm")
    assert policy.deid_bytes(data).output == r.output
    assert "bytes" in repr(r)


def test_deid_file(policy, files, tmp_path):
    dst = tmp_path / "out" / "x.dcm"
    dst.parent.mkdir()
    r = policy.deid_file(files[0], dst)
    assert r.output is None
    if r.outcome == "written":
        assert dst.read_bytes() == policy.deid_bytes(files[0].read_bytes()).output
    with pytest.raises(OSError):
        policy.deid_file(tmp_path / "missing.dcm", tmp_path / "y.dcm")


def test_explain(policy, files):
    e = veil.explain(files[0].read_bytes(), policy)
    assert set(e) == {"options", "review", "decisions"}
    assert e["decisions"]
    d = e["decisions"][0]
    assert {"path", "keyword", "vr", "action", "why"} <= set(d)


def test_verify_bytes(policy, files):
    src = files[0].read_bytes()
    out = policy.deid_bytes(src).output
    findings = veil.verify_bytes(out, source=src)
    assert isinstance(findings, list)
    for f in findings:
        assert {"category", "place"} <= set(f)
    # the source itself, verified against itself, leaks its own values
    leaks = veil.verify_bytes(src, source=src)
    assert leaks and all({"category", "place"} <= set(f) for f in leaks)
    assert isinstance(veil.verify_bytes(out), list)


# --- threads ---------------------------------------------------------------


def test_threads_same_bytes(key, files):
    policy = veil.Policy(key, options=PIXELS)
    datas = [f.read_bytes() for f in files[:8]]
    seq = [sha(policy.deid_bytes(d).output or b"") for d in datas]
    jobs = [d for _ in range(3) for d in datas]
    with ThreadPoolExecutor(max_workers=8) as ex:
        par = list(ex.map(lambda d: sha(policy.deid_bytes(d).output or b""), jobs))
    assert par == seq * 3


# --- determinism against `veil deid` ----------------------------------------


def cli_outputs(key_path, inputs, tmp, options):
    out, review = tmp / "out", tmp / "review"
    args = [str(VEIL_BIN), "deid", *map(str, inputs), "--out", str(out)]
    args += ["--review", str(review), "--key", str(key_path), "--jobs", "2"]
    for o in options:
        args += ["--option", o]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode in (0, 1), p.stderr
    got = {}
    for root in (out, review):
        if root.is_dir():
            for f in root.rglob("*.dcm"):
                got[f.relative_to(root).as_posix()] = sha(f.read_bytes())
    return got


@pytest.mark.parametrize("options", [[], PIXELS], ids=["header", "pixels"])
def test_same_bytes_as_veil_deid(key, key_path, files, tmp_path, options):
    if not VEIL_BIN.exists():
        pytest.skip(f"no {VEIL_BIN} (cargo build -p veil-cli)")
    cli = cli_outputs(key_path, files, tmp_path, options)
    policy = veil.Policy(key, options=options)
    compared = 0
    seen = {}
    for f in files:
        r = policy.deid_bytes(f.read_bytes())
        if r.outcome not in ("written", "review"):
            continue
        h = sha(r.output)
        if r.name in seen and seen[r.name] != h:
            continue  # a duplicate instance: the batch released the first
        seen.setdefault(r.name, h)
        assert r.name in cli, f"{f.name}: {r.outcome} {r.name} not written by veil deid"
        assert cli[r.name] == h, f"{f.name}: bytes differ from veil deid's"
        compared += 1
    assert compared >= min(len(files), 10)
    assert set(seen) == set(cli)


def test_defacing_single_object_goes_to_review(key, files):
    """Defacing works per series: a single CT/MR/PT object goes to review."""
    policy = veil.Policy(key, options=["clean-recognizable-visual-features"])
    ct = [f for f in CORPUS.rglob("*CT_small.dcm")]
    if not ct:
        pytest.skip("no CT_small.dcm in the corpus")
    r = policy.deid_bytes(ct[0].read_bytes())
    assert r.outcome == "review"
    assert "clean-recognizable-visual-features" in r.reason


def test_groups_are_keyed_and_typed(files):
    """study_group and series_group: the same digest for the same UID and
    salt, another salt another digest, never the UID itself; a series
    digest only for CT and MR; typed errors."""
    ct = [f for f in CORPUS.rglob("*CT_small.dcm")]
    if not ct:
        pytest.skip("no CT_small.dcm in the corpus")
    data = ct[0].read_bytes()
    s1, s2 = os.urandom(32), os.urandom(32)
    a = veil.study_group(data, s1)
    assert a == veil.study_group(data, s1) != veil.study_group(data, s2)
    assert len(a) == 64 and b"." not in a.encode()
    assert veil.series_group(data, s1) not in (None, a)
    # the corpus sample holds other modalities too: no series digest
    assert any(veil.series_group(f.read_bytes(), s1) is None for f in files)
    with pytest.raises(veil.VeilError):
        veil.study_group(data, b"short")
    with pytest.raises(veil.NotDicomError):
        veil.series_group(b"not dicom", s1)


def test_site_errors_are_typed(tmp_path):
    """A home without keys: SiteError naming what to do, no key created."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with pytest.raises(veil.SiteError, match="veil init"):
        veil.Site(home=str(home), db=None)
    assert not [p for p in home.iterdir() if p.name.endswith(".key")]
