"""The Parquet tables of one trial folder: ``epochs.parquet`` (one row per epoch) and
``test_ll.parquet`` (one row per test image) — their columns and pyarrow schemas.

The one definition of them: `models.trial` writes them, and `study.store` builds the
study-wide tables from these by putting ``study`` and ``trial_key`` in front. No torch here.
"""

from __future__ import annotations

import pyarrow as pa

METRICS_FILE = "metrics.json"  # a finished trial's summary (models.trial), defined once here
EPOCHS_FILE = "epochs.parquet"  # a trial's epochs (`EPOCHS_TRIAL_SCHEMA`), defined once here
TEST_LL_FILE = "test_ll.parquet"  # its per-image test rows (`TEST_LL_TRIAL_SCHEMA`), here too
# ``val_elbo_mc``: the validation MC ELBO (models.training), null in epochs recorded before it.
# The last five: models.diagnostics.DIAGNOSTICS (null for the standard prior and for epochs
# recorded before they existed).
EPOCH_COLUMNS = ("epoch", "beta", "train_loss", "train_re", "train_kl", "val_loss", "val_re",
                 "val_kl", "val_elbo_mc", "seconds", "spread_ratio", "members_used",
                 "resp_perplexity", "bound_gap", "lse_gap")
TEST_LL_COLUMNS = ("image", "log_likelihood", "elbo_bound", "elbo_mc", "re", "kl_bound", "kl_mc",
                   "kl_lse")


def _schema(columns: tuple[str, ...]) -> pa.Schema:
    """The first column an int64 index (epoch, image), every other one float64 nats."""
    return pa.schema([(columns[0], pa.int64())] + [(name, pa.float64()) for name in columns[1:]])


EPOCHS_TRIAL_SCHEMA = _schema(EPOCH_COLUMNS)
TEST_LL_TRIAL_SCHEMA = _schema(TEST_LL_COLUMNS)
