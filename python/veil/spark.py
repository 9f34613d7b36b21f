"""``python -m veil.spark``: ``veil deid`` as a PySpark job.

    python -m veil.spark [--master local[2]] --key K [--recipe R] [--option O ...]
                         --input URI --out URI [--review URI] [--report URI]

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

Stage 1 writes each output under a staging name in its root
(``.veil-staging/``), stage 2 moves the one that is released into place,
so an output appears only complete and never twice. Inputs and outputs
are local folders or ``s3://bucket/prefix``; executors read and write
through Veil (``veil.Inputs``, ``veil.Root``), never through Hadoop
(Spark here has no ``s3a://``). One outcome row per input comes back,
and is written as Parquet (or JSON lines for a ``.json`` report, or
for an ``s3://`` report).
"""

import argparse
import json
import sys

STAGING = ".veil-staging"
RELEASED = ("written", "review")
ROW_SCHEMA = ("index long, input string, bytes long, outcome string, reason string, "
              "output string")


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


def deid_stage(conf):
    """Stage 1, on an executor: de-identifies each input of the partition
    and writes its output under a staging name; yields its row."""

    def run(items):
        import veil

        policy = _policy(conf)
        src = veil.Inputs(conf["input"])
        roots = {"written": veil.Root(conf["out"]), "review": veil.Root(conf["review"])}
        for index, name, size in items:
            row = {"index": index, "input": name, "bytes": size, "outcome": None,
                   "reason": None, "output": None, "staged": None}
            try:
                r = policy.deid_bytes(src.read(name))
            except veil.VeilError as e:  # the input could not be read: why, no path
                row.update(outcome="quarantined", reason=str(e))
                yield row
                continue
            row.update(outcome=r.outcome, reason=r.reason, output=r.name)
            if r.outcome in RELEASED and r.output is not None:
                staged = "%s/%09d.dcm" % (STAGING, index)
                roots[r.outcome].write(staged, r.output)
                row["staged"] = staged
            yield row

    return run


def settle_stage(conf):
    """Stage 2, per output name: the first input wins, unless the output
    is in place from an earlier run; every staged copy is removed."""

    def run(groups):
        import veil

        roots = {"written": veil.Root(conf["out"]), "review": veil.Root(conf["review"])}
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
                    root.rename(r["staged"], r["output"])
                yield r

    return run


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
    inputs = [(i, name, size) for i, (name, size) in enumerate(veil.Inputs(conf["input"]).list())]
    n = max(1, min(partitions or sc.defaultParallelism, len(inputs) or 1))
    buckets = balanced(inputs, n)
    rows = (sc.parallelize(range(n), n)
            .flatMap(lambda i: buckets[i])
            .mapPartitions(deid_stage(conf)))
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
    held = [(r["output"], r["reason"]) for r in result if r["outcome"] == "review"]
    review.record_review(out, policy, held)
    # what a killed earlier run left in staging (this run's own copies
    # are gone already)
    for loc, root in ((conf["out"], out), (conf["review"], review)):
        sweep(loc, root)
    return result


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


def write_report(spark, rows, where):
    """The outcome rows as Parquet, JSON lines (``.json``), or, for
    ``s3://``, one JSON-lines object written through Veil."""
    import veil

    if where.startswith("s3://"):
        prefix, _, name = where.rstrip("/").rpartition("/")
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        veil.Root(prefix).write(name, body.encode())
        return
    df = spark.createDataFrame(rows, schema=ROW_SCHEMA).coalesce(1)
    if where.endswith(".json"):
        df.write.mode("overwrite").json(where)
    else:
        df.write.mode("overwrite").parquet(where)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m veil.spark",
                                 description="veil deid as a PySpark job")
    ap.add_argument("--master", help="Spark master, e.g. local[2] (default: what spark-submit set)")
    ap.add_argument("--key", required=True, help="key file (0600), readable on every executor")
    ap.add_argument("--recipe", help="recipe file")
    ap.add_argument("--option", action="append", default=[], help="PS3.15 option (repeat)")
    ap.add_argument("--input", required=True, help="file, folder or s3://bucket/prefix")
    ap.add_argument("--out", required=True, help="folder or s3://bucket/prefix")
    ap.add_argument("--review", help="review folder or prefix (default: OUT.review)")
    ap.add_argument("--report", help="outcome rows: Parquet, .json (JSON lines) or s3://...")
    ap.add_argument("--partitions", type=int, help="default: Spark's default parallelism")
    a = ap.parse_args(argv)

    import os

    from pyspark.sql import SparkSession

    # executors run this interpreter (where the veil package is) unless
    # the site says otherwise (a cluster's own PYSPARK_PYTHON)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("veil deid")
    if a.master:
        builder = builder.master(a.master)
    spark = builder.getOrCreate()
    conf = {"key": a.key, "recipe": a.recipe, "options": a.option, "input": a.input,
            "out": a.out, "review": a.review or a.out.rstrip("/") + ".review"}
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


if __name__ == "__main__":
    sys.exit(main())
