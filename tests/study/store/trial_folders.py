"""Trial folders as the trainable leaves them, for the store's tests (no training, no Ray):
`write_trial` writes a record, epochs.parquet and (when COMPLETED) test_ll.parquet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from search_spaces import complete_config, trial_key
from study import store


def flat(**changes) -> dict:
    return complete_config({"dataset": "digits", "M": 2, "K": 10, **changes})


def epoch_rows(n: int, offset: float = 0.0) -> list[dict]:
    return [{"epoch": e, "beta": min(1.0, e / 2), "train_loss": 10.0 - e + offset,
             "train_re": 9.0 - e, "train_kl": 1.0, "val_loss": 11.0 - e + offset,
             "val_re": 10.0 - e, "val_kl": 1.0, "seconds": 0.1} for e in range(1, n + 1)]


def write_trial(study_dir, config: dict, state: str = "COMPLETED", epochs: int = 3,
                started: datetime | None = None, n_test: int = 4, offset: float = 0.0,
                stopped_early: bool = False, continued_from: str | None = None) -> str:
    """A trial folder as the trainable leaves it; its trial_key."""
    fs, root = store.filesystem(str(study_dir))
    key = trial_key(config)
    folder = store.join(root, store.TRIALS_DIR, key)
    rows = epoch_rows(epochs, offset)
    store.write_epochs(fs, folder, rows)
    metrics = None
    if state == "COMPLETED":
        pq.write_table(pa.table({
            "image": list(range(n_test)), "log_likelihood": [-9.0 - offset] * n_test,
            "elbo_bound": [-10.0] * n_test, "elbo_mc": [-9.5] * n_test, "re": [8.0] * n_test,
            "kl_bound": [2.0] * n_test, "kl_mc": [1.5] * n_test}), f"{folder}/test_ll.parquet")
        metrics = {"epochs_run": epochs, "best_epoch": epochs, "best_val_loss": rows[-1][
            "val_loss"], "stopped_early": stopped_early, "test_re": 8.0, "test_kl": 2.0,
            "test_kl_mc": 1.5, "test_elbo_bound": -10.0, "test_elbo_mc": -9.5,
            "test_ll": -9.0 - offset, "is_samples": config["is_samples"], "train_seconds": 0.3,
            "eval_seconds": 0.1, "device": "cpu", "n_test": n_test}
    started = started or datetime(2026, 1, 1, tzinfo=UTC)
    record = store.make_record(
        study="s", trial_key=key, state=state, config=config, metrics=metrics, epochs=rows,
        error=None if state == "COMPLETED" else "non-finite loss", started_at=started,
        ended_at=started + timedelta(seconds=10), node="host/127.0.0.1",
        versions={"torch": "x"}, git_rev="abc", trial_dir=folder, continued_from=continued_from)
    store.write_record(fs, folder, record)
    return key
