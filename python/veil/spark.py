"""``python -m veil.spark``: ``veil deid`` as a PySpark job.

    python -m veil.spark [--master local[2]] --key K [--recipe R] [--option O ...]
                         --input URI --out URI [--review URI] [--report URI]
    python -m veil.spark [--master local[2]] --recipient NAME --purpose P
                         [--operator O] --input DIR --out DIR [--report URI]

Why Spark needs no coordinator here: Veil's pseudonyms, UIDs and date
shifts are keyed (HMAC), not drawn from a shared counter, so every
executor given the same key makes the same output for the same input.
The job only has to spread the inputs, de-identify each through the
Python package (the same Rust code as ``veil deid``, so the same bytes),
and settle what depends on more than one input, in a second stage
grouped by output name:

- two inputs holding the same instance (same output name) are released
  once, the first in ``veil deid``'s input order; the others are
  ``duplicate-instance``;
- an output already in place from an earlier run is kept
  (``already-done``): a rerun finishes what a killed run left.

Duplicates keep this rule and its cost (issue 21): stage 1 runs every
input through the whole core, pixel stage included, on whichever
executor holds it, and only stage 2 sees that two inputs are one
instance. ``veil deid`` instead recognizes copies before the pixel
stage; here that would take a grouping by instance before stage 1 (a
shuffle of every input's header), which the job does not do. Which input
is released, and its bytes, are the same as ``veil deid``'s.

Stage 1 writes each output under a staging name in its root
(``.veil-staging/``), stage 2 moves the one that is released into place,
so an output appears only complete and never twice. Inputs and outputs
are local folders or ``s3://bucket/prefix``; executors read and write
through Veil (``veil.Inputs``, ``veil.Root``), never through Hadoop
(Spark here has no ``s3a://``). One outcome row per input comes back,
and is written as Parquet (or JSON lines for a ``.json`` report, or
for an ``s3://`` report).

With ``--recipient`` and ``--purpose`` the job is ``veil release``
instead: consent per patient-study, the recipient's recipe and key,
verification, and one ledger entry per decision, appended by the
executors themselves to the site's ledger (PostgreSQL, ``$VEIL_DB_URL``,
shared by every executor and every other ``veil`` process). Stage 1
groups the inputs by study (a keyed digest of the Study Instance UID,
with a key made for this job only, so the UID does not travel);
the driver spreads whole studies over the partitions by size; stage 2
runs one release per partition into ``OUT/part-NNNNN``, each a release
folder with its own manifest. One summary row per partition comes back.
Executors need ``$VEIL_HOME`` (the site's keys) and ``$VEIL_DB_URL``;
inputs and OUT are local paths every executor can reach.
"""

import argparse
import json
import sys

STAGING = ".veil-staging"
RELEASED = ("written", "review")
ROW_SCHEMA = ("index long, input string, bytes long, outcome string, reason string, "
              "output string")
RELEASE_SCHEMA = ("partition long, files long, release_id string, studies long, "
                  "released long, refused map<string,long>, held_for_review long, "
                  "unreadable long, ledger_positions array<long>, exit_code long")


def balanced(inputs, n):
    """Splits ``(index, name, size)`` items into ``n`` buckets of about
    equal total size (largest first, each into the lightest bucket), each
    bucket in input order."""
    buckets = [[] for _ in range(n)]
    load = [0] * n
    for item in sorted(inputs, key=lambda x: (-x[2], x[0])):
        i = load.index(min(load))
        buckets[i].append(item)
        load[i] += item[2]
    return [sorted(b) for b in buckets]


def _policy(conf):
    import veil

    return veil.Policy(veil.Key.load(conf["key"]), recipe=conf["recipe"],
                       options=conf["options"])


def _stage(row, r, roots):
    """Fills an outcome row from a Result; a released output is written
    under a staging name in its root."""
    row.update(outcome=r.outcome, reason=r.reason, output=r.name)
    if r.outcome in RELEASED and r.output is not None:
        staged = "%s/%09d.dcm" % (STAGING, row["index"])
        # made durable once per partition (_partition), before stage 2
        # renames anything
        roots[r.outcome].write(staged, r.output, durable=False)
        row["staged"] = staged
    return row


def _partition(conf, body):
    """The function Spark maps over a partition: ``body(items, roots)``
    yields its rows, then the partition's deferred writes and renames are
    made durable (a local root's file system synced once, instead of
    fsyncs per file), before Spark sees the partition end."""

    def run(items):
        roots = _roots(conf)
        yield from body(items, roots)
        for root in roots.values():
            root.sync()

    return run


def _roots(conf):
    import veil

    return {"written": veil.Root(conf["out"]), "review": veil.Root(conf["review"])}


def _row(index, name, size):
    return {"index": index, "input": name, "bytes": size, "outcome": None, "reason": None,
            "output": None, "staged": None, "series": None}


def deid_stage(conf):
    """Stage 1, on an executor: de-identifies each input of the partition
    and writes its output under a staging name; yields its row. With
    defacing, a CT or MR input is only tagged with its series (keyed
    digest) for the series stage."""

    def rows(items, roots):
        import veil

        policy = _policy(conf)
        src = veil.Inputs(conf["input"])
        for index, name, size in items:
            row = _row(index, name, size)
            try:
                data = src.read(name)
            except veil.VeilError as e:  # the input could not be read: why, no path
                row.update(outcome="quarantined", reason=str(e))
                yield row
                continue
            if conf["deface"]:
                try:
                    row["series"] = veil.series_group(data, conf["salt"])
                except veil.VeilError:
                    pass  # not DICOM: deid_bytes says so
                if row["series"] is not None:
                    yield row
                    continue
            yield _stage(row, policy.deid_bytes(data, dicomdir=conf["dicomdir"]), roots)

    return _partition(conf, rows)


def series_stage(conf):
    """Stage 1b (defacing), per series: the series' inputs, in input
    order, are defaced as one volume and de-identified on one executor
    (``Policy.deid_series``), as ``veil deid`` does; yields their rows."""

    def series(groups, roots):
        import veil

        policy = _policy(conf)
        src = veil.Inputs(conf["input"])
        for _series, rows in groups:
            rows = sorted(rows, key=lambda r: r["index"])
            results = policy.deid_series([src.read(r["input"]) for r in rows],
                                         dicomdir=conf["dicomdir"])
            for row, r in zip(rows, results):
                yield _stage(dict(row, series=None), r, roots)

    return _partition(conf, series)


def settle_stage(conf):
    """Stage 2, per output name: the first input wins, unless the output
    is in place from an earlier run; every staged copy is removed."""

    def settle(groups, roots):
        for _name, rows in groups:
            rows = sorted(rows, key=lambda r: r["index"])
            for i, r in enumerate(rows):
                root = roots[r["outcome"]]
                if i > 0:
                    root.remove(r["staged"])
                    r = dict(r, outcome="duplicate-instance", reason=None)
                elif root.exists(r["output"]):
                    root.remove(r["staged"])
                    r = dict(r, outcome="already-done")
                else:
                    root.rename(r["staged"], r["output"], durable=False)
                yield r

    return _partition(conf, settle)


def spread(sc, conf, partitions):
    """Lists the inputs in ``veil deid``'s order and spreads ``(index,
    name, size)`` items over balanced partitions. Returns the conf with
    this job's salt for the group digests (``veil.series_group``,
    ``veil.study_group``: a key of this job only), the partition count and
    the items' RDD."""
    import os

    import veil

    inputs = [(i, name, size) for i, (name, size) in enumerate(veil.Inputs(conf["input"]).list())]
    n = max(1, min(partitions or sc.defaultParallelism, len(inputs) or 1))
    buckets = balanced(inputs, n)
    items = sc.parallelize(range(n), n).flatMap(lambda i: buckets[i])
    return dict(conf, salt=os.urandom(32)), n, items


def run_job(spark, conf, partitions=None):
    """Runs the job on ``spark``; returns the outcome rows, in input order
    (dicts: index, input, bytes, outcome, reason, output)."""
    import veil

    sc = spark.sparkContext
    # on the driver first: a bad key, recipe, option or OUT stops the job
    # before any executor starts, as `veil deid` stops before any input
    policy = _policy(conf)
    out, review = veil.Root(conf["out"]), veil.Root(conf["review"])
    out.claim(policy)
    conf, n, items = spread(sc, conf, partitions)
    rows = items.mapPartitions(deid_stage(conf))
    if conf["deface"]:
        rows.cache()
        series = (rows.filter(lambda r: r["series"] is not None)
                  .groupBy(lambda r: r["series"], numPartitions=n)
                  .mapPartitions(series_stage(conf)))
        rows = rows.filter(lambda r: r["series"] is None).union(series)
    rows.cache()
    placed = (rows.filter(lambda r: r["staged"] is not None)
              .groupBy(lambda r: r["output"], numPartitions=n)
              .mapPartitions(settle_stage(conf))
              .collect())
    rest = rows.filter(lambda r: r["staged"] is None).collect()
    rows.unpersist()
    result = sorted(placed + rest, key=lambda r: r["index"])
    for r in result:
        r.pop("staged", None)
        r.pop("series", None)
    held = [(r["output"], r["reason"]) for r in result if r["outcome"] == "review"]
    review.record_review(out, policy, held)
    if conf["dicomdir"]:
        # study-level, from the headers of what OUT holds (as veil deid
        # --dicomdir): on the driver, after every output is in place
        out.write_dicomdir(policy, [r["output"] for r in result
                                    if r["outcome"] in ("written", "already-done")])
    # what a killed earlier run left in staging (this run's own copies
    # are gone already)
    for loc, root in ((conf["out"], out), (conf["review"], review)):
        sweep(loc, root)
    return result


def group_stage(conf):
    """Release stage 1, on an executor: the study group of each input
    (keyed digest of its Study Instance UID; "" for what does not parse,
    which the release then counts as unreadable)."""

    def run(items):
        import veil

        src = veil.Inputs(conf["input"])
        for index, name, size in items:
            try:
                group = veil.study_group(src.read(name), conf["salt"])
            except veil.VeilError:
                group = ""
            yield group, (index, name, size)

    return run


def release_stage(conf):
    """Release stage 2, on an executor: one ``veil release`` per partition
    into ``OUT/part-NNNNN``; its decisions go to the site's ledger."""

    def run(parts):
        import veil

        site = None
        for part, files in parts:
            site = site or veil.Site()
            out = "%s/part-%05d" % (conf["out"].rstrip("/"), part)
            s = site.release(conf["recipient"], conf["purpose"], [name for _, name, _ in files],
                             out, operator=conf["operator"], jobs=1)
            yield dict(s, partition=part, files=len(files))

    return run


def release_job(spark, conf, partitions=None):
    """Runs the release job; returns one summary dict per partition."""
    import os

    import veil

    for loc in (conf["input"], conf["out"]):
        if loc.startswith("s3://"):
            raise SystemExit("veil spark: a release reads and publishes local folders "
                             "(s3:// is for the de-identification job)")
    # on the driver first: keys, store, recipient and purpose, and an OUT
    # that is new or empty, before any executor starts
    veil.Site().dry_run(conf["recipient"], conf["purpose"])
    if os.path.isdir(conf["out"]) and os.listdir(conf["out"]):
        raise SystemExit("veil spark: OUT must be new or empty (each release gets its own folder)")
    sc = spark.sparkContext
    conf, n, items = spread(sc, conf, partitions)
    groups = (items.mapPartitions(group_stage(conf))
              .groupByKey()
              .map(lambda kv: sorted(kv[1]))
              .collect())
    # whole studies, spread by size; each partition's files in input order
    studies = [(files[0][0], files, sum(f[2] for f in files)) for files in groups]
    parts = [sorted(f for _, files, _ in b for f in files) for b in balanced(studies, n)]
    work = [(k, files) for k, files in enumerate(parts) if files]
    if not work:
        return []
    return (sc.parallelize(work, len(work))
            .mapPartitions(release_stage(conf))
            .collect())


def sweep(location, root):
    """Removes the staging area of an output root."""
    import veil

    if not root.exists(STAGING) and not location.startswith("s3://"):
        return
    # staging names are flat: a local listing gives paths, S3 keys; the
    # last component is the staged name either way
    for name, _ in veil.Inputs(location.rstrip("/") + "/" + STAGING).list():
        root.remove(STAGING + "/" + name.rsplit("/", 1)[-1])
    root.remove(STAGING)


def write_report(spark, rows, where, schema=ROW_SCHEMA):
    """The rows as Parquet, JSON lines (``.json``), or, for ``s3://``, one
    JSON-lines object written through Veil."""
    import veil

    if where.startswith("s3://"):
        prefix, _, name = where.rstrip("/").rpartition("/")
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        veil.Root(prefix).write(name, body.encode())
        return
    fields = [f.split()[0] for f in schema.split(", ")]
    rows = [tuple(r.get(f) for f in fields) for r in rows]
    df = spark.createDataFrame(rows, schema=schema).coalesce(1)
    if where.endswith(".json"):
        df.write.mode("overwrite").json(where)
    else:
        df.write.mode("overwrite").parquet(where)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m veil.spark",
                                 description="veil deid as a PySpark job")
    ap.add_argument("--master", help="Spark master, e.g. local[2] (default: what spark-submit set)")
    ap.add_argument("--key", help="key file (0600), readable on every executor")
    ap.add_argument("--recipe", help="recipe file")
    ap.add_argument("--option", action="append", default=[], help="PS3.15 option (repeat)")
    ap.add_argument("--input", required=True, help="file, folder or s3://bucket/prefix")
    ap.add_argument("--out", required=True, help="folder or s3://bucket/prefix")
    ap.add_argument("--review", help="review folder or prefix (default: OUT.review)")
    ap.add_argument("--report", help="outcome rows: Parquet, .json (JSON lines) or s3://...")
    ap.add_argument("--partitions", type=int, help="default: Spark's default parallelism")
    ap.add_argument("--dicomdir", action="store_true",
                    help="write OUT/DICOMDIR (PS3.10 File IDs), as veil deid --dicomdir")
    ap.add_argument("--recipient", help="release for this recipient (veil release), "
                    "logging every decision in the site's ledger")
    ap.add_argument("--purpose", help="purpose of use, with --recipient")
    ap.add_argument("--operator", help="who runs the release, for the ledger (default: $USER)")
    a = ap.parse_args(argv)
    if a.recipient or a.purpose:
        if not (a.recipient and a.purpose):
            ap.error("--recipient and --purpose go together")
        if a.key or a.recipe or a.option or a.review or a.dicomdir:
            ap.error("a release uses the recipient's recipe and key: leave out --key, "
                     "--recipe, --option, --review and --dicomdir")
    elif not a.key:
        ap.error("give --key (or --recipient and --purpose for a release)")

    import os

    from pyspark.sql import SparkSession

    # executors run this interpreter (where the veil package is) unless
    # the site says otherwise (a cluster's own PYSPARK_PYTHON)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("veil release" if a.recipient else "veil deid")
    if a.master:
        builder = builder.master(a.master)
    spark = builder.getOrCreate()
    if a.recipient:
        conf = {"recipient": a.recipient, "purpose": a.purpose, "operator": a.operator,
                "input": a.input, "out": a.out}
        try:
            rows = release_job(spark, conf, a.partitions)
            if a.report:
                write_report(spark, rows, a.report, RELEASE_SCHEMA)
        finally:
            spark.stop()
        return release_line(rows)
    conf = {"key": a.key, "recipe": a.recipe, "options": a.option, "input": a.input,
            "out": a.out, "review": a.review or a.out.rstrip("/") + ".review",
            "dicomdir": a.dicomdir,
            "deface": "clean-recognizable-visual-features" in a.option}
    try:
        rows = run_job(spark, conf, a.partitions)
        if a.report:
            write_report(spark, rows, a.report)
    finally:
        spark.stop()
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print("veil spark: %d inputs: %s" % (len(rows), ", ".join(
        "%d %s" % (v, k) for k, v in sorted(counts.items()))), file=sys.stderr)
    return 1 if counts.get("quarantined") else 0


def release_line(rows):
    """Prints the release job's totals (counts only); returns its exit
    status: 1 when a partition's release would exit 1 (a refusal other
    than consent, or an unreadable input)."""
    refused = {}
    for r in rows:
        for k, v in r["refused"].items():
            refused[k] = refused.get(k, 0) + v
    positions = sorted(p for r in rows for p in r["ledger_positions"])
    print("veil spark release: %d releases, %d studies: %d released, %d refused%s; "
          "%d ledger entries" % (
              len(rows), sum(r["studies"] for r in rows), sum(r["released"] for r in rows),
              sum(refused.values()),
              " (" + ", ".join("%d %s" % (v, k) for k, v in sorted(refused.items())) + ")"
              if refused else "", len(positions)), file=sys.stderr)
    return max([r["exit_code"] for r in rows] or [0])


if __name__ == "__main__":
    sys.exit(main())
