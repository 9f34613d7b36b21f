"""Issue 20: 4 `veil release` processes and 2 Spark executors appending at
once to one PostgreSQL ledger (run by scripts/test-python.sh, which starts
the throwaway PostgreSQL, scripts/pg.sh, and exports VEIL_TEST_PG_URL).

The Spark job is `python -m veil.spark --recipient ... --purpose ...` in
`local[2]`: stage 1 groups the inputs by study, stage 2 runs one release
per partition on the executors (two Python workers, each with its own
connection), each appending its decisions to the site's ledger. While it
runs, rounds of 4 concurrent `veil release` processes (the binary) append
to the same ledger. Afterwards `veil ledger verify` passes, the ledger
holds exactly the setup entries plus every decision reported (by the
processes' `--json` summaries and the Spark job's report), at positions
0..N with no gap and no repeat, and the Spark executors' positions fall
among the processes' (they appended at the same time).

The fixtures are small real corpus images whose patient, study, series
and instance UIDs are rewritten by dcmtk's `dcmodify` (a peer tool), so
the test decides who the patients are; every third patient denies the
recipient.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.parse

import pytest

from test_api import CORPUS, VEIL_BIN

PG = os.environ.get("VEIL_TEST_PG_URL")
SOURCES = ["pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm",
           "pydicom-3.0.2/pydicom__data__test_files__MR_small.dcm"]
PROCS = 4
MAX_ROUNDS = 200
CONSENT_ROUNDS = 3
STUDIES_PER_PROC = 3
SPARK_STUDIES = 12


def denied(i):
    return i % 3 == 1


def plant(src, dst, patient, study, n):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    subprocess.run(["dcmodify", "-nb", "-q",
                    "-m", "PatientID=" + patient,
                    "-m", "StudyInstanceUID=" + study,
                    "-m", "SeriesInstanceUID=%s.9" % study,
                    "-m", "SOPInstanceUID=%s.%d" % (study, n),
                    str(dst)], check=True)


@pytest.fixture
def site(tmp_path):
    """A fresh database on the throwaway server and a site using it:
    (env, home)."""
    if not PG:
        if os.environ.get("VEIL_REQUIRE_PG"):
            pytest.fail("VEIL_REQUIRE_PG is set but VEIL_TEST_PG_URL is not")
        pytest.skip("VEIL_TEST_PG_URL not set (scripts/pg.sh)")
    name = "veil_i20_spark_%d" % os.getpid()
    quiet = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(["psql", PG, "-qc", "DROP DATABASE IF EXISTS %s" % name], check=True,
                   env=quiet)
    subprocess.run(["psql", PG, "-qc", "CREATE DATABASE %s" % name], check=True)
    u = urllib.parse.urlsplit(PG)
    url = urllib.parse.urlunsplit(u._replace(path="/" + name))
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = dict(os.environ, VEIL_HOME=str(home), VEIL_DB_URL=url)
    yield env, home
    subprocess.run(["psql", PG, "-qc", "DROP DATABASE IF EXISTS %s" % name], env=quiet)


def veil(env, *args):
    p = subprocess.run([str(VEIL_BIN), *map(str, args)], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def ledger_seqs(env):
    out = subprocess.run(["psql", env["VEIL_DB_URL"], "-tAc", "SELECT seq FROM ledger ORDER BY seq"],
                         check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_spark_executors_and_four_releases_share_one_postgresql_ledger(site, tmp_path):
    env, home = site
    srcs = [CORPUS / s for s in SOURCES]
    if not all(s.is_file() for s in srcs):
        pytest.skip("corpus not built (scripts/fetch-corpus.sh)")
    veil(env, "init")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\nversion = "1"\n')
    veil(env, "recipient", "add", "acme", "--purpose", "ai-training", "--recipe", recipe,
         "--retention-days", "30")
    veil(env, "consent", "default", "ai-training", "opt-out")

    def patient(tag, i, denies):
        who = "I20-%s-P%d" % (tag, i)
        if denies:
            veil(env, "consent", "set", who, "--deny", "--recipient", "acme")
        return who

    # the Spark job's inputs: SPARK_STUDIES studies of two instances each
    spark_in = tmp_path / "spark-in"
    for i in range(SPARK_STUDIES):
        who = patient("S", i, denied(i))
        for n in range(2):
            plant(srcs[n], spark_in / ("%02d-%d.dcm" % (i, n)), who,
                  "1.2.826.0.1.3680043.9.7720.99.%d" % i, n + 1)

    def round_inputs(r):
        """The processes' inputs of round r, and, in the first rounds
        (planted before the job starts), their consents."""
        for p in range(PROCS):
            for i in range(STUDIES_PER_PROC):
                who = patient("R%d-W%d" % (r, p), i, r < CONSENT_ROUNDS and denied(i))
                plant(srcs[i % 2], tmp_path / ("in-%d-%d/%d.dcm" % (r, p, i)), who,
                      "1.2.826.0.1.3680043.9.7720.%d.%d.%d" % (r, p, i), 1)

    for r in range(CONSENT_ROUNDS):
        round_inputs(r)
    setup = len(ledger_seqs(env))

    report = tmp_path / "spark-report.json"
    job = subprocess.Popen(
        [sys.executable, "-m", "veil.spark", "--master", "local[2]", "--recipient", "acme",
         "--purpose", "ai-training", "--input", str(spark_in), "--out", str(tmp_path / "spark-out"),
         "--report", str(report)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cli = []
    rounds = 0
    # rounds of 4 concurrent releases from before the Spark job appends
    # until after it ended
    after = 0
    while after < 1 and rounds < MAX_ROUNDS:
        if job.poll() is not None:
            after += 1
        if rounds >= CONSENT_ROUNDS:
            round_inputs(rounds)
        children = [subprocess.Popen(
            [str(VEIL_BIN), "release", "--recipient", "acme", "--purpose", "ai-training",
             str(tmp_path / ("in-%d-%d" % (rounds, p))), "--out",
             str(tmp_path / ("out-%d-%d" % (rounds, p))), "--jobs", "1", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for p in range(PROCS)]
        for c in children:
            out, err = c.communicate()
            assert c.returncode == 0, err
            cli.append(json.loads(out))
        rounds += 1
    out, err = job.communicate()
    assert after == 1, "the Spark job outlasted %d rounds of releases" % rounds
    assert job.returncode == 0, err[-3000:]
    assert "veil spark release:" in err

    rows = [json.loads(line) for f in sorted(report.glob("part-*"))
            for line in f.read_text().splitlines()]
    # two executors, each a release of its own with its own entries
    assert len(rows) == 2, rows
    assert all(r["ledger_positions"] for r in rows), rows
    assert sum(r["studies"] for r in rows) == SPARK_STUDIES
    refused = sum(sum(r["refused"].values()) for r in rows)
    assert refused == sum(denied(i) for i in range(SPARK_STUDIES))
    assert sum(r["released"] for r in rows) == SPARK_STUDIES - refused
    for k, s in enumerate(cli):
        want = sum(denied(i) for i in range(STUDIES_PER_PROC)) if k < CONSENT_ROUNDS * PROCS else 0
        assert sum(s["refused"].values()) == want, s
        assert s["released"] + want == STUDIES_PER_PROC, s
        assert len(s["ledger_positions"]) == STUDIES_PER_PROC, s

    # every release's output is in place: the executors' under OUT/part-N
    # (each with its release's control folder, .part-N.veil-release)
    parts = sorted(p.name for p in (tmp_path / "spark-out").iterdir()
                   if not p.name.startswith("."))
    assert parts == ["part-00000", "part-00001"], parts
    assert all((tmp_path / "spark-out" / p / "manifest.json").is_file() for p in parts)

    # one sequence, no gap, no repeat, nothing but what was reported
    veil(env, "ledger", "verify")
    seqs = ledger_seqs(env)
    reported = [p for r in rows + cli for p in r["ledger_positions"]]
    assert len(seqs) == setup + len(reported), (len(seqs), setup, len(reported))
    assert seqs == list(range(len(seqs)))
    assert sorted(reported) == list(range(setup, len(seqs)))
    # appended at the same time: the executors' entries sit among the
    # processes' (some process appended before and after each executor's
    # first entry)
    cli_pos = [p for s in cli for p in s["ledger_positions"]]
    for r in rows:
        first = min(r["ledger_positions"])
        assert min(cli_pos) < first < max(cli_pos), (r["ledger_positions"], cli_pos)
    print("%d rounds of %d releases and 2 Spark executors: %d entries after %d setup"
          % (rounds, PROCS, len(reported), setup))
