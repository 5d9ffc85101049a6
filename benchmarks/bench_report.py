"""Benchmark of the report's data step on a large synthetic study.

Builds, in a temporary folder, a study of ``--trials`` trials (default 10,000) × ``--epochs``
epochs (default 200: 2 million epoch rows) with ``--images`` per-image test rows per completed
trial (default 50), laid out as the results writer does (``results/*.parquet``). Then, in a
fresh subprocess (so that its peak resident memory is the report's own), it times loading the
study and every registered output's ``prep`` (the table and figure data), and, with
``--render``, every ``render`` separately. Prints one JSON object::

    .venv/bin/python benchmarks/bench_report.py            # data only (target: < 10 s)
    .venv/bin/python benchmarks/bench_report.py --render   # and the figures, timed apart

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that subprocess (KiB on Linux),
taken after the data step and again after rendering.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 10.0
DATASETS = ("mnist", "omniglot", "frey")
ARCHS = ("mlp", "cnn", "pixel")
KS = (100, 500, 1000)
PIS = {
    1: [[1.0]],
    2: [[0.5, 0.5], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]],
    3: [[1 / 3] * 3, [0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1]],
}


def _configs():
    import polars as pl

    rows = []
    for dataset in DATASETS:
        for arch in ARCHS:
            rows.append(dict(dataset=dataset, arch=arch, prior="standard", M=1, K=500, pi=[1.0]))
            for m, pis in PIS.items():
                for k in KS:
                    for pi in pis:
                        rows.append(dict(dataset=dataset, arch=arch, prior="pseudo_mixture",
                                         M=m, K=k, pi=pi))
    return pl.DataFrame(rows).with_row_index("config")


def build(root: Path, n_trials: int, n_epochs: int, n_images: int) -> dict[str, int]:
    """Write results/{trials,epochs,test_ll}.parquet of a synthetic study under ``root``."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    configs = _configs()
    seeds = -(-n_trials // configs.height)
    trials = (
        # seed-major, so that cutting at n_trials drops seeds, not whole configurations
        pl.DataFrame({"seed": range(seeds)}).join(configs, how="cross")
        .head(n_trials)
        .with_row_index("i")
    )
    n = trials.height
    state = rng.choice(["COMPLETED", "ERROR", "RUNNING"], size=n, p=[0.97, 0.02, 0.01])
    base = -90.0 + 2.0 * trials["M"].to_numpy() + rng.normal(0, 0.5, n)
    gap = rng.uniform(2, 6, n)
    done = state == "COMPLETED"

    def when_done(values):
        return pl.Series(np.where(done, values, np.nan)).fill_nan(None)

    trials = trials.with_columns(
        pl.lit("bench").alias("study"),
        pl.format("t{}", "i").alias("trial_key"),
        pl.Series("state", state),
        pl.when(pl.Series(state) == "ERROR").then(pl.lit("NonFiniteLossError: nan")).alias(
            "error"),
        pl.lit("bernoulli").alias("likelihood"),
        pl.lit("greedy").alias("kl_estimator"),
        pl.lit(40).alias("latent_dim"),
        pl.lit(n_epochs).alias("max_epochs"),
        pl.lit(n_epochs // 4).alias("warmup_epochs"),
        pl.lit(n_epochs).alias("epochs_run"),
        when_done(base).alias("test_ll"),
        when_done(base - gap).alias("test_elbo_bound"),
        when_done(base - gap / 2).alias("test_elbo_mc"),
        when_done(np.full(n, 60.0)).alias("test_re"),
        when_done(-(base - gap) - 60.0).alias("test_kl"),
        when_done(-(base - gap / 2) - 60.0).alias("test_kl_mc"),
        pl.lit(5000).alias("is_samples"),
        pl.format("trials/t{}", "i").alias("trial_dir"),
        pl.lit(1).alias("schema_version"),
    ).drop("i", "config")
    results = root / "results"
    results.mkdir(parents=True)
    trials.write_parquet(results / "trials.parquet")

    # epochs: every trial × every epoch (2 million rows by default)
    idx = np.repeat(np.arange(n), n_epochs)
    epoch = np.tile(np.arange(1, n_epochs + 1), n)
    val = 100.0 + 50.0 / epoch + rng.normal(0, 0.2, n * n_epochs)
    epochs = pl.DataFrame({"i": idx, "epoch": epoch, "val_loss": val}).with_columns(
        pl.lit("bench").alias("study"),
        pl.format("t{}", "i").alias("trial_key"),
        (pl.col("epoch") / (n_epochs // 4)).clip(upper_bound=1.0).alias("beta"),
        (pl.col("val_loss") - 1.0).alias("train_loss"),
        pl.lit(60.0).alias("train_re"),
        pl.lit(40.0).alias("train_kl"),
        pl.lit(60.0).alias("val_re"),
        pl.lit(40.0).alias("val_kl"),
        pl.lit(1.5).alias("seconds"),
    ).drop("i")
    epochs.write_parquet(results / "epochs.parquet")

    # per-image test rows of the completed trials
    completed = np.flatnonzero(done)
    idx = np.repeat(completed, n_images)
    ll = base[idx] + rng.normal(0, 5.0, idx.size)
    images = pl.DataFrame({
        "i": idx, "image": np.tile(np.arange(n_images), completed.size), "log_likelihood": ll,
    }).with_columns(
        pl.lit("bench").alias("study"),
        pl.format("t{}", "i").alias("trial_key"),
        (pl.col("log_likelihood") - 4.0).alias("elbo_bound"),
        (pl.col("log_likelihood") - 2.0).alias("elbo_mc"),
        pl.lit(60.0).alias("re"),
        pl.lit(30.0).alias("kl_bound"),
    ).drop("i")
    images.write_parquet(results / "test_ll.parquet")
    return {"trials": n, "epoch_rows": epochs.height, "test_ll_rows": images.height}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(study: Path, render_to: Path | None) -> dict:
    """Time load + every prep (and, optionally, every render) in this process."""
    start = time.perf_counter()
    from analysis import registry
    from analysis.load import load

    outputs = registry.outputs()
    imports = time.perf_counter() - start
    t = time.perf_counter()
    frames = load([study])
    result: dict = {"import_seconds": round(imports, 3),
                    "load_seconds": round(time.perf_counter() - t, 3), "prep_seconds": {}}
    data = {}
    for output in outputs:
        t = time.perf_counter()
        data[output.name] = output.prep(frames)
        result["prep_seconds"][output.name] = round(time.perf_counter() - t, 3)
    result["data_seconds"] = round(result["load_seconds"] + sum(result["prep_seconds"].values()),
                                   3)
    result["rows"] = {name: df.height for name, df in data.items()}
    result["peak_rss_mb_data"] = round(_peak_rss_mb(), 1)
    if render_to is not None:
        result["render_seconds"] = {}
        for output in outputs:
            if data[output.name].is_empty():
                continue
            t = time.perf_counter()
            output.render(data[output.name], render_to)
            result["render_seconds"][output.name] = round(time.perf_counter() - t, 3)
        result["render_total_seconds"] = round(sum(result["render_seconds"].values()), 3)
        result["peak_rss_mb_render"] = round(_peak_rss_mb(), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--render", action="store_true", help="also time the renderers")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--render-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:  # the subprocess
        print(json.dumps(measure(args.measure, args.render_to)))
        return 0
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        study = Path(tmp) / "study"
        t = time.perf_counter()
        sizes = build(study, args.trials, args.epochs, args.images)
        generate = time.perf_counter() - t
        command = [sys.executable, __file__, "--measure", str(study)]
        if args.render:
            command += ["--render-to", str(Path(tmp) / "report")]
        done = subprocess.run(command, capture_output=True, text=True, cwd=repo, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        result = json.loads(done.stdout)
    report = {"benchmark": "report data (load + prep of every output)", **sizes,
              "generate_seconds": round(generate, 3), **result,
              "target_seconds": TARGET_SECONDS,
              "within_target": result["data_seconds"] < TARGET_SECONDS}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
