"""Read one or more study folders into Polars frames (the ``load`` step of load → prep → render).

A study folder holds ``results/trials.parquet`` (one row per trial), ``results/epochs.parquet``
(trial × epoch) and ``results/test_ll.parquet`` (trial × test image), with the columns of
docs/ARCHITECTURE.md "Results". Reading is deliberately forgiving, because a report is most
needed when a study is half-way or has crashed, and because studies written by different schema
versions get compared:

- every file is scanned lazily and normalised to one canonical schema (``TRIALS``, ``EPOCHS``,
  ``TEST_LL``): a missing column becomes a typed null column, a column of another type is cast
  (non-strictly), unknown extra columns are dropped;
- a missing or unreadable ``epochs.parquet`` or ``test_ll.parquet`` is an empty frame (its
  outputs are skipped with a note; an unreadable one is named in ``Frames.warnings``); a
  missing, empty or unreadable ``trials.parquet``, or a missing folder, is a ``ResultsError``
  (one line; ``gmmpvae report`` exits with status 2);
- each folder gets a label, written into the ``study`` column of all three frames so that studies
  merged with ``--compare`` stay apart even when they share a name;
- a trial written twice (a re-run after a crash) keeps its last row;
- a study's ``plan.parquet`` (one row per planned trial, written when the study starts) adds the
  planned trials that have no row yet, in state ``NOT STARTED`` (a trial's row is written when
  it ends). Data only: nothing here imports ``study``;
- a study folder is a local path or a filesystem URI (``s3://bucket/studies/x``,
  `analysis.location`): an object store is read through pyarrow with the endpoint and keys of
  the environment, and a store that cannot be read is a ``ResultsError`` of one line.

Derived trial columns used by every output: ``model`` ("VAE" for the standard prior, "Mix1" =
VampPrior, "Mix2", "Mix3", … for the pseudo-mixture prior with M components), ``K`` (null for
the standard prior: it has no pseudo-inputs), ``pi_label``/``pi_uniform``, ``variant``
(settings that vary between trials besides the paper's keys, the budget ``max_epochs`` among
them in a study grown with ``gmmpvae extend``), ``label`` (one readable name per model and
budget), ``model_label`` (the same less the budget) and ``trial_path`` (``trial_dir`` resolved
against the study folder). ``collapsed`` is not read as stored: ``collapse_state`` (collapsed,
healthy, not yet spread, or null: undecided) is re-derived from the recorded spread_ratio,
resp_perplexity, best_epoch and warmup_epochs and the largest spread ratio of the earlier
epochs (epochs.parquet) by `models.collapse_rule.collapse_state`, and ``collapsed`` is True /
False for collapsed / healthy (null otherwise), so a study written under an older rule is
judged by the current one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analysis.location import Location
from models.collapse_rule import COLLAPSED, HEALTHY, collapse_state

COMPLETED = "COMPLETED"
NOT_STARTED = "NOT STARTED"  # planned in plan.parquet, no row in trials.parquet yet
# The study folder's file names (written by study.store; a test checks that
# they agree, since analysis reads data and never imports study).
PLAN_FILE = "plan.parquet"
RESULTS_DIR = "results"
STUDY_FILE = "study.json"
# nats: claim (c)'s equivalence margin when the study sets none — the paper's smallest reported
# gain (Table 1, K 100 → 500, pixel, M = 1: +0.30 nats): a π effect below every gain the paper
# reports as one counts as "little" (docs/VERDICTS.md)
DEFAULT_PI_MARGIN = 0.3

TRIALS: dict[str, pl.DataType] = {
    "study": pl.String(),
    "trial_key": pl.String(),
    "state": pl.String(),
    "error": pl.String(),
    "dataset": pl.String(),
    "arch": pl.String(),
    "prior": pl.String(),
    "likelihood": pl.String(),
    "kl_estimator": pl.String(),
    "M": pl.Int64(),
    "pi": pl.List(pl.Float64()),
    "K": pl.Int64(),
    "latent_dim": pl.Int64(),
    "seed": pl.Int64(),
    "max_epochs": pl.Int64(),
    "warmup_epochs": pl.Int64(),
    "epochs_run": pl.Int64(),
    "best_epoch": pl.Int64(),
    "best_val_loss": pl.Float64(),
    "test_re": pl.Float64(),
    "test_kl": pl.Float64(),
    "test_kl_mc": pl.Float64(),
    "test_elbo_bound": pl.Float64(),
    "test_elbo_mc": pl.Float64(),
    "test_ll": pl.Float64(),
    # schema version 2 (issue 8): U_lse and the collapse diagnostics; null in older studies
    "test_kl_lse": pl.Float64(),
    "spread_ratio": pl.Float64(),
    "members_used": pl.Float64(),
    "resp_perplexity": pl.Float64(),
    "bound_gap": pl.Float64(),
    "lse_gap": pl.Float64(),
    "collapsed": pl.Boolean(),
    "is_samples": pl.Int64(),
    # the other ModelConfig / TrainConfig settings: the claims pair trials on every setting
    "hidden_dim": pl.Int64(),
    "image_shape": pl.List(pl.Int64()),
    "pseudo_init": pl.String(),
    "pixel_layers": pl.Int64(),
    "pixel_channels": pl.Int64(),
    "lr": pl.Float64(),
    "batch_size": pl.Int64(),
    "patience": pl.Int64(),
    "max_train_examples": pl.Int64(),
    "max_test_examples": pl.Int64(),
    "precision": pl.String(),
    "train_seconds": pl.Float64(),
    "eval_seconds": pl.Float64(),
    "trial_dir": pl.String(),
    "schema_version": pl.Int64(),
    # schema version 3 (issue 23, docs/BUDGETS.md): one configuration at several budgets;
    # null in older studies (every row trained from scratch)
    "config_key": pl.String(),
    "continued_from": pl.String(),
    "carried_from": pl.String(),
    "started_at": pl.Datetime("us", "UTC"),  # the first attempt's start: a search's order
    "ended_at": pl.Datetime("us", "UTC"),
}
EPOCHS: dict[str, pl.DataType] = {
    "study": pl.String(),
    "trial_key": pl.String(),
    "epoch": pl.Int64(),
    "beta": pl.Float64(),
    "train_loss": pl.Float64(),
    "train_re": pl.Float64(),
    "train_kl": pl.Float64(),
    "val_loss": pl.Float64(),
    "val_re": pl.Float64(),
    "val_kl": pl.Float64(),
    "val_elbo_mc": pl.Float64(),  # the validation MC ELBO (estimator-free); null before it
    "seconds": pl.Float64(),
    "spread_ratio": pl.Float64(),  # version 2: models.diagnostics on the validation set
    "members_used": pl.Float64(),
    "resp_perplexity": pl.Float64(),
    "bound_gap": pl.Float64(),
    "lse_gap": pl.Float64(),
}
TEST_LL: dict[str, pl.DataType] = {
    "study": pl.String(),
    "trial_key": pl.String(),
    "image": pl.Int64(),
    "log_likelihood": pl.Float64(),
    "elbo_bound": pl.Float64(),
    "elbo_mc": pl.Float64(),
    "re": pl.Float64(),
    "kl_bound": pl.Float64(),
    "kl_mc": pl.Float64(),
    "kl_lse": pl.Float64(),  # version 2
}

# The paper's grouping (Table 1); ``label`` is a function of these plus the varying extras.
ARCH_ORDER = {"mlp": 0, "cnn": 1, "pixel": 2}  # the paper's order, not the alphabet
BASE_KEYS = ("study", "dataset", "arch", "model", "prior", "M", "K")
# Settings that become grouping keys only where they vary between trials. ``max_epochs`` varies
# in a study grown with ``gmmpvae extend`` (docs/BUDGETS.md): every model is then one row per
# budget, never pooled over budgets.
OPTIONAL_KEYS = ("pi_label", "kl_estimator", "latent_dim", "max_epochs")


class ResultsError(ValueError):
    """A study folder that cannot be reported (missing, empty, unreadable): one line."""


@dataclass(frozen=True)
class Frames:
    """Everything the outputs read. ``trials`` is small and eager; the others stay lazy."""

    trials: pl.DataFrame
    epochs: pl.LazyFrame
    test_ll: pl.LazyFrame
    studies: pl.DataFrame  # study (label), path, name
    extra_keys: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. an unreadable epochs.parquet, read as empty

    @property
    def model_keys(self) -> list[str]:
        """Columns that identify one model (a row of Table 1); seeds are averaged over."""
        return [*BASE_KEYS, *self.extra_keys, "label"]


def _parquet_source(results: Location, stem: str) -> Location | None:
    """``results/<stem>.parquet``, or None."""
    path = results.child(f"{stem}.parquet")
    return path if path.is_file() else None


def _normalise(lf: pl.LazyFrame, schema: dict[str, pl.DataType], where: str) -> pl.LazyFrame:
    """Select the canonical columns: cast what is there, add typed nulls for what is not."""
    try:
        have = lf.collect_schema()
    except Exception as exc:  # a truncated or foreign file: polars raises several kinds
        raise ResultsError(f"cannot read {where}: {_one_line(exc)}") from exc
    columns = []
    for name, dtype in schema.items():
        if name not in have:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
        elif have[name] == dtype:
            columns.append(pl.col(name))
        else:
            columns.append(pl.col(name).cast(dtype, strict=False))
    return lf.select(columns)


def _scan(results: Location, stem: str, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    source = _parquet_source(results, stem)
    if source is None:
        return pl.LazyFrame(schema=schema)
    try:
        lf = source.scan_parquet()
    except Exception as exc:  # read eagerly from an object store: a torn file fails here
        raise ResultsError(f"cannot read {source}: {_one_line(exc)}") from exc
    return _normalise(lf, schema, str(source))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _results_folder(study_dir: Location) -> Location:
    """The folder holding trials.parquet: STUDY/results, or STUDY itself if given that."""
    kind = study_dir.kind()
    if kind == "missing":
        raise ResultsError(f"study folder {study_dir} does not exist")
    if kind != "dir":
        raise ResultsError(f"{study_dir} is not a folder (expected a study folder)")
    for candidate in (study_dir.child(RESULTS_DIR), study_dir):
        if _parquet_source(candidate, "trials") is not None:
            return candidate
    hint = "has the study written any trial yet?"
    if study_dir.child("trials").kind() == "dir" and study_dir.child("trials").has_files(""):
        hint = "its trial folders hold no finished trial yet"
    raise ResultsError(
        f"no results in {study_dir}: expected {study_dir.child('results', 'trials.parquet')} "
        f"({hint})"
    )


def _not_started(study_dir: Location, trials: pl.DataFrame, warnings: list[str]
                 ) -> pl.DataFrame:
    """The trials a study planned (its ``plan.parquet``) that trials.parquet lacks.

    A running study writes a trial's row only when the trial ends, so the plan is the only
    place that knows what is still missing. Open searches plan no trial: nothing is added.
    """
    path = study_dir.child(PLAN_FILE)
    columns = [c for c in TRIALS if c not in ("study", "state")]
    try:
        if not path.is_file():
            return trials.clear()
        planned = _normalise(path.scan_parquet(), {c: TRIALS[c] for c in columns},
                             str(path)).collect()
    except Exception as exc:  # a torn plan must not stop the report
        warnings.append(f"cannot read the plan in {path} ({_one_line(exc)}): trials not "
                        "started yet are not listed")
        return trials.clear()
    return (
        planned.filter(~pl.col("trial_key").is_in(trials["trial_key"].implode()))
        .with_columns(pl.lit(NOT_STARTED).alias("state"), pl.lit(None).alias("study"))
        .select(trials.columns)
        .cast(trials.schema)
    )


def _labels(dirs: Sequence[Location], names: Sequence[str | None]) -> list[str]:
    """One distinct label per folder: the study name, else the folder name, else numbered."""
    labels = [name or d.name for d, name in zip(dirs, names, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [d.name for d in dirs]
    if len(set(labels)) < len(labels):
        labels = [f"{label}#{i + 1}" for i, label in enumerate(labels)]
    return labels


def _derive(trials: pl.LazyFrame) -> pl.LazyFrame:
    """Add the columns every output groups by (see the module docstring)."""
    standard = pl.col("prior") == "standard"
    pi = pl.col("pi")
    return (
        trials
        .with_columns(
            pl.coalesce(pl.col("M"), pi.list.len().cast(pl.Int64)).alias("M"),
        )
        # π omitted means uniform (as in ModelConfig)
        .with_columns(
            pl.coalesce(pi, (1.0 / pl.col("M")).repeat_by(pl.col("M"))).alias("pi")
        )
        .with_columns(
            pl.when(standard & (pl.col("M").fill_null(1) == 1))
            .then(pl.lit("VAE"))
            .when(standard)
            .then(pl.format("VAE-M{}", pl.col("M")))
            .when(pl.col("prior") == "pseudo_mixture")
            .then(pl.format("Mix{}", pl.col("M")))
            .otherwise(pl.lit("unknown"))
            .alias("model"),
            # the standard prior has no pseudo-inputs: K is not one of its settings
            pl.when(standard).then(None).otherwise(pl.col("K")).alias("K"),
            pl.format("({})", pi.list.eval(pl.element().round(2).cast(pl.String)).list.join(", "))
            .fill_null("uniform")
            .alias("pi_label"),
            ((pi.list.max() - pi.list.min()).fill_null(0.0) < 1e-6).alias("pi_uniform"),
            pi.list.max().fill_null(1.0).alias("pi_max"),
        )
    )


def _text_labels(trials: pl.DataFrame, extra_keys: Sequence[str]) -> pl.DataFrame:
    """``variant`` (varying settings other than π), ``label`` (arch, model, K, extras) and
    ``model_label`` (the label less the budget: one name for a model across budgets)."""
    parts = {
        # π of one component is always (1.0): not worth a word
        "pi_label": pl.when(pl.col("M") > 1).then(pl.format("π={}", pl.col("pi_label"))),
        "kl_estimator": pl.format("KL={}", pl.col("kl_estimator").fill_null("?")),
        "latent_dim": pl.format("D={}", pl.col("latent_dim").cast(pl.String).fill_null("?")),
        "max_epochs": pl.format("{} epochs", pl.col("max_epochs").cast(pl.String)
                                .fill_null("?")),
    }
    variant = [parts[k] for k in extra_keys if k != "pi_label"]

    def label(keys: Sequence[str]) -> pl.Expr:
        return pl.concat_str([
            pl.col("arch").fill_null("?"),
            pl.col("model"),
            pl.when(pl.col("K").is_not_null()).then(pl.format("K={}", pl.col("K"))),
            *[parts[k] for k in keys],
        ], separator=" ", ignore_nulls=True)

    variant_expr = pl.concat_str(variant, separator=" ") if variant else pl.lit("")
    return trials.with_columns(
        variant_expr.alias("variant"),
        label(extra_keys).alias("label"),
        label([k for k in extra_keys if k != "max_epochs"]).alias("model_label"),
    )


def load(study_dirs: Sequence[Path | str]) -> Frames:
    """Read study folders, local or URIs (the first is the main one; others come from
    ``--compare``)."""
    if not study_dirs:
        raise ResultsError("no study folder given")
    try:
        return _load([Location.of(d) for d in study_dirs])
    except OSError as exc:  # an object store that cannot be read (refused, keys, bucket)
        raise ResultsError(_one_line(exc)) from exc


def _load(dirs: list[Location]) -> Frames:
    results = [_results_folder(d) for d in dirs]
    scans = [_scan(r, "trials", TRIALS) for r in results]
    try:
        tables = [s.collect() for s in scans]
    except Exception as exc:
        raise ResultsError(f"cannot read trials.parquet: {_one_line(exc)}") from exc
    for d, table in zip(dirs, tables, strict=True):
        if table.is_empty():
            raise ResultsError(f"study folder {d} has no trials yet (trials.parquet is empty)")
        if table["trial_key"].null_count() == table.height:
            raise ResultsError(f"{d}: trials.parquet has no trial_key column")
    names = [_single_name(t) for t in tables]
    warnings: list[str] = []
    tables = [pl.concat([t, _not_started(d, t, warnings)]) for d, t in zip(dirs, tables,
                                                                          strict=True)]
    labels = _labels(dirs, names)

    def tag(lf: pl.LazyFrame, label: str) -> pl.LazyFrame:
        return lf.with_columns(pl.lit(label).alias("study"))

    trials = pl.concat(
        [
            tag(t.lazy(), label).with_columns(
                pl.lit(d.absolute).alias("study_dir"),
                # relative trial folders are relative to the study folder
                pl.when(pl.col("trial_dir").str.starts_with("/")
                        | pl.col("trial_dir").str.contains("://", literal=True))
                .then(pl.col("trial_dir"))
                .otherwise(pl.lit(d.absolute + "/") + pl.col("trial_dir"))
                .alias("trial_path"),
            )
            for d, t, label in zip(dirs, tables, labels, strict=True)
        ],
        how="diagonal_relaxed",
    )
    trials = (
        _derive(trials)
        .unique(subset=["study", "trial_key"], keep="last", maintain_order=True)
        .collect()
    )
    extra = tuple(
        k
        for k in OPTIONAL_KEYS
        # a column missing from one study's schema (all null there) is not a variation
        if trials.filter(pl.col("state") == COMPLETED)[k].drop_nulls().n_unique() > 1
    )
    trials = _text_labels(trials, extra)

    def optional(results: Location, stem: str, schema: dict[str, pl.DataType]
                 ) -> pl.LazyFrame:
        # a crashed writer may leave a broken file: report without it rather than not at all
        try:
            return _scan(results, stem, schema)
        except ResultsError as exc:
            warnings.append(f"{exc}; its outputs are skipped")
            return pl.LazyFrame(schema=schema)

    epochs = pl.concat(
        [tag(optional(r, "epochs", EPOCHS), lab) for r, lab in zip(results, labels, strict=True)],
        how="diagonal_relaxed",
    )
    trials = _with_collapse(trials, epochs)
    test_ll = pl.concat(
        [tag(optional(r, "test_ll", TEST_LL), lab)
         for r, lab in zip(results, labels, strict=True)],
        how="diagonal_relaxed",
    )
    studies = pl.DataFrame(
        {
            "study": labels,
            "path": [str(d) for d in dirs],
            "name": [n or "" for n in names],
            "pi_margin": [pi_margin(d) for d in dirs],
            "smallest_effect": [claims_setting(d, "smallest_effect") for d in dirs],
        },
        schema_overrides={"smallest_effect": pl.Float64},
    )
    return Frames(trials=trials, epochs=epochs, test_ll=test_ll, studies=studies,
                  extra_keys=extra, warnings=tuple(warnings))


def pi_margin(study_dir: Location) -> float:
    """Claim (c)'s margin: ``spec.claims.pi_margin`` of the study's study.json (the study
    file's ``[claims] pi_margin``), else `DEFAULT_PI_MARGIN`; a malformed value is a
    `ResultsError` (one line)."""
    value = claims_setting(study_dir, "pi_margin")
    return DEFAULT_PI_MARGIN if value is None else value


def claims_setting(study_dir: Location, key: str) -> float | None:
    """``spec.claims.<key>`` (a number of nats > 0) of the study's study.json, None when the
    study sets none; a malformed value is a `ResultsError` (one line)."""
    path = study_dir.child(STUDY_FILE)
    value = (study_spec(study_dir).get("claims") or {}).get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ResultsError(f"{path}: claims.{key}={value!r} is invalid: expected a number "
                           "of nats > 0")
    return float(value)


def _with_collapse(trials: pl.DataFrame, epochs: pl.LazyFrame) -> pl.DataFrame:
    """``collapse_state`` and ``collapsed``: the collapse rule applied to the recorded columns
    at the best epoch, with the largest spread ratio of the trial's earlier epochs from
    epochs.parquet (see the module docstring)."""
    peaks = (epochs.select("study", "trial_key", "epoch", "spread_ratio")
             .join(trials.lazy().select("study", "trial_key", "best_epoch"),
                   on=["study", "trial_key"], how="inner")
             .filter(pl.col("epoch") < pl.col("best_epoch"))
             .group_by("study", "trial_key").agg(pl.col("spread_ratio").max().alias("peak"))
             .collect())
    rows = trials.select("study", "trial_key", "spread_ratio", "resp_perplexity", "best_epoch",
                         "warmup_epochs").join(peaks, on=["study", "trial_key"], how="left",
                                               maintain_order="left")
    states = [collapse_state(*r) for r in rows.select(
        "spread_ratio", "resp_perplexity", "best_epoch", "warmup_epochs", "peak").iter_rows()]
    return trials.with_columns(
        pl.Series("collapse_state", states, pl.String),
        pl.Series("collapsed", [{COLLAPSED: True, HEALTHY: False}.get(x) for x in states],
                  pl.Boolean))


def study_spec(study_dir: Location | Path | str) -> dict:
    """The ``spec`` of the study's study.json (the study file as run: ``search``, ``model``,
    ``budget``, ``data``, ``claims`` tables); {} without one; an unreadable one is a
    `ResultsError` (one line)."""
    path = Location.of(study_dir).child(STUDY_FILE) if not isinstance(study_dir, Location) \
        else study_dir.child(STUDY_FILE)
    try:
        if not path.is_file():
            return {}
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {_one_line(exc)}") from exc
    spec = info.get("spec") if isinstance(info, dict) else None
    return spec if isinstance(spec, dict) else {}


def _single_name(trials: pl.DataFrame) -> str | None:
    names = trials["study"].drop_nulls().unique()
    return str(names[0]) if len(names) == 1 else None


def spread_over_k(df: pl.LazyFrame, panel: Sequence[str] = ("dataset", "arch")) -> pl.LazyFrame:
    """Repeat the rows without K (the VAE) in every K panel of the same ``panel`` keys.

    Figures with one panel per K, or with K on the x axis, show the VAE — which has no
    pseudo-inputs — as the same reference in each; where a panel has no K at all the rows stay
    with a null K.
    """
    panel = list(panel)
    ks = df.filter(pl.col("K").is_not_null()).select(*panel, "K").unique()
    with_k = df.filter(pl.col("K").is_not_null())
    spread = df.filter(pl.col("K").is_null()).drop("K").join(ks, on=panel, how="left",
                                                             nulls_equal=True)
    return pl.concat([with_k, spread], how="diagonal_relaxed")


def arch_order() -> pl.Expr:
    """mlp, cnn, pixel (the paper's order); unknown architectures after them."""
    return pl.col("arch").replace_strict(ARCH_ORDER, default=len(ARCH_ORDER), return_dtype=pl.Int64)


def model_order() -> pl.Expr:
    """VAE first, then Mix1, Mix2, … (sorting the label text would put VAE last)."""
    return pl.when(pl.col("prior") == "standard").then(0).otherwise(pl.col("M").fill_null(99))
