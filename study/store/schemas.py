"""The study's Parquet schemas (version 3) and its file names: defined once, here (a trial's
``epochs.parquet`` and ``test_ll.parquet`` in `models.records`, next to their schemas).

A study's results: per-trial records and the consolidated Parquet dataset. The study folder's
layout is `study.store.layout`'s; records are written by `study.store.records`, the
consolidated dataset by `study.store.consolidate`. The files:

``STUDY/trials/<trial_key>/``: one folder per trial — one configuration at one budget
(``max_epochs`` is in the key; docs/BUDGETS.md): trial.json (the record below, written as the
trial ends), running.json while an attempt runs (`study.store.running`), epochs.parquet,
test_ll.parquet, metrics.json, config.json, checkpoint/, images (see models.trial). A carried
trial's folder holds its trial.json only: its files are its source's (``carried_from``).
``STUDY/plan.parquet`` (`PLAN_SCHEMA`): the planned trials, written when the study starts.
``STUDY/results/``: the consolidated dataset:

``trials.parquet`` (`TRIALS_SCHEMA`, one row per trial_key, i.e. per configuration and budget):
    ``study``, ``trial_key`` (stable, `search_spaces.trial_key`; it covers ``max_epochs``),
    ``config_key`` (v3: `search_spaces.config_key`, the same for every budget of one
    configuration; derived from the config columns when the study is consolidated, so version-2
    rows get it too), ``state`` (``COMPLETED``;
    ``ERROR``: a non-finite loss or a crash that used up its retries, reason in ``error``;
    ``PRUNED``: stopped early by the scheduler, no test metrics), ``error``; every ModelConfig
    field and every TrainConfig field under its own name (``pi`` list<double>, ``image_shape``
    list<int64>) except TrainConfig's ``device``, stored as ``device_requested`` (``auto`` …),
    because ``device`` is the device the trial actually ran on (``max_epochs`` is the row's
    budget); ``epochs_run`` (the epochs trained, ≤ max_epochs), ``best_epoch``,
    ``best_val_loss``, ``stopped_early``, the budget's provenance (v3; null in version-2 rows,
    which were all trained from scratch): ``continued_from`` (the trial_key of the smaller
    budget whose last checkpoint this trial continued from; null: trained from scratch) and
    ``carried_from`` (the trial_key whose result this row repeats unchanged, because that trial
    ended before its budget — stopped early, pruned, errored — and would have ended the same
    way at this one; every result column is the source's, the config columns this row's own;
    null otherwise), ``test_re``, ``test_kl`` (the bound U), ``test_kl_mc``,
    ``test_elbo_bound`` (−(RE + U), the paper's "≤ ln p(x)"), ``test_elbo_mc``, ``test_ll`` (all
    nats per test image), ``test_kl_lse`` (U_lse, v2), ``n_test``, ``train_seconds``,
    ``eval_seconds``, the collapse diagnostics of the best epoch ``spread_ratio``,
    ``members_used``, ``resp_perplexity``, ``bound_gap``, ``lse_gap`` and ``collapsed``
    (models.diagnostics; v2, null for the VAE and for version-1 rows), ``started_at`` /
    ``ended_at`` (timestamp[us, UTC]; started_at is the first attempt's start), ``attempts``
    (1 + the times the trial was resumed from a checkpoint), ``node`` (``hostname/ip``),
    ``device`` (``cpu`` or ``cuda:<index> <GPU name>``), ``gpu_memory_peak_mb`` (the most GPU
    memory the trial's tensors held, ``torch.cuda.max_memory_allocated``; null on CPU and
    for a trial without metrics), ``versions`` (JSON: torch, ray, optuna, python), ``git_rev``
    (``git rev-parse HEAD`` at study start, or ``unknown``), ``trial_dir``, ``schema_version``
    (= 3; version-1 and version-2 trial folders lack the later columns, which readers fill with
    nulls — but ``config_key``, derived).

``epochs.parquet`` (`EPOCHS_SCHEMA`): ``study``, ``trial_key``, ``epoch`` (from 1), ``beta``,
``train_loss``, ``train_re``, ``train_kl``, ``val_loss``, ``val_re``, ``val_kl``,
``val_elbo_mc`` (the validation MC ELBO; null in rows written before it), ``seconds``, and (v2)
the validation diagnostics ``spread_ratio`` … ``lse_gap`` (models.records).

``test_ll.parquet`` (`TEST_LL_SCHEMA`): ``study``, ``trial_key``, ``image`` (test-set index),
``log_likelihood`` (importance-sampled), ``elbo_bound``, ``elbo_mc``, ``re``, ``kl_bound``,
``kl_mc``, ``kl_lse`` (v2) (nats, per image).

Every budget keeps its rows, once each: a trial continued from a smaller budget has all its
epochs (1 … epochs_run, the smaller budget's included: its history) under its own key, next to
the smaller budget's trial and rows; a carried trial's epochs and test images are its source's,
under its own key. So scoping by ``max_epochs`` (a join on trial_key for epochs and test_ll)
gives every configuration once per budget.

The trial folders are the source of truth: `consolidate` rebuilds the three files from them
"""

from __future__ import annotations

import pyarrow as pa

from models.records import EPOCHS_FILE as EPOCHS_FILE  # a trial's file names: the trial's own
from models.records import EPOCHS_TRIAL_SCHEMA, TEST_LL_TRIAL_SCHEMA
from models.records import TEST_LL_FILE as TEST_LL_FILE

# 2: test_kl_lse, the collapse diagnostics and ``collapsed`` (issue 8);
# 3: config_key, continued_from, carried_from: one configuration at several budgets (issue 23)
SCHEMA_VERSION = 3
RECORD_FILE = "trial.json"
RUNNING_FILE = "running.json"  # a running attempt's marker, removed by its record
TRIALS_FILE = "trials.parquet"
# A trial record's states, defined here once.
COMPLETED, ERROR, PRUNED = "COMPLETED", "ERROR", "PRUNED"
STATES = (COMPLETED, ERROR, PRUNED)

_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")

# ModelConfig fields, in declaration order (a test checks this against models.config).
MODEL_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("arch", _STR), ("prior", _STR), ("likelihood", _STR), ("kl_estimator", _STR), ("M", _I64),
    ("pi", pa.list_(_F64)), ("K", _I64), ("latent_dim", _I64), ("hidden_dim", _I64),
    ("image_shape", pa.list_(_I64)), ("pseudo_init", _STR), ("pixel_layers", _I64),
    ("pixel_channels", _I64),
)
# TrainConfig fields, in declaration order; ``device`` is stored as ``device_requested``.
TRAIN_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("dataset", _STR), ("lr", _F64), ("batch_size", _I64), ("max_epochs", _I64),
    ("warmup_epochs", _I64), ("patience", _I64), ("seed", _I64), ("is_samples", _I64),
    ("eval_memory_mb", _I64), ("max_train_examples", _I64), ("max_test_examples", _I64),
    ("device_requested", _STR), ("data_dir", _STR), ("precision", _STR), ("compile", _BOOL),
)
TEST_METRICS = ("test_re", "test_kl", "test_kl_mc", "test_elbo_bound", "test_elbo_mc", "test_ll",
                "test_kl_lse")
# Where a budget's result came from (v3): a smaller budget's checkpoint, or a trial it repeats.
BUDGET_SOURCES = ("continued_from", "carried_from")
# models.diagnostics.DIAGNOSTICS of the best epoch's weights, and the collapse flag from them.
DIAGNOSTIC_METRICS = ("spread_ratio", "members_used", "resp_perplexity", "bound_gap", "lse_gap")

TRIALS_SCHEMA = pa.schema([
    ("study", _STR), ("trial_key", _STR), ("config_key", _STR), ("state", _STR), ("error", _STR),
    *MODEL_COLUMNS,
    *TRAIN_COLUMNS,
    ("epochs_run", _I64), ("best_epoch", _I64), ("best_val_loss", _F64), ("stopped_early", _BOOL),
    *[(name, _STR) for name in BUDGET_SOURCES],
    *[(name, _F64) for name in TEST_METRICS],
    ("n_test", _I64), ("train_seconds", _F64), ("eval_seconds", _F64),
    *[(name, _F64) for name in DIAGNOSTIC_METRICS], ("collapsed", _BOOL),
    ("started_at", _TS), ("ended_at", _TS), ("attempts", _I64),
    ("node", _STR), ("device", _STR), ("gpu_memory_peak_mb", _F64),
    ("versions", _STR), ("git_rev", _STR), ("trial_dir", _STR),
    ("schema_version", _I64),
], metadata={"schema_version": str(SCHEMA_VERSION)})

# A trial folder's own tables (models.records), with the study and the trial's key in front.
EPOCHS_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *EPOCHS_TRIAL_SCHEMA],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
TEST_LL_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *TEST_LL_TRIAL_SCHEMA],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
# STUDY/plan.parquet: one row per planned trial, its key and its flat config (TrainConfig's
# ``device`` as ``device_requested``, as in trials.parquet); empty for an open search.
PLAN_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *MODEL_COLUMNS, *TRAIN_COLUMNS],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)

