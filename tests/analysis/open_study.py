"""A hand-made open-search study folder, with the Optuna journal a real search would leave.

``write_open_study(root, n)`` drives the ``open_search_digits`` preset's space the way the
searcher does (``Study.ask`` on a journal-backed study, ``StudySpec.suggest(trial)`` — the
space's own ``suggest_*`` calls —, ``Study.tell`` with the trial's last-epoch ``val_elbo_mc``;
a configuration drawn twice is told FAIL and drawn again) without training anything: each
trial's metrics are a known function of its configuration plus seeded noise. It writes what
a finished study holds: ``study.json`` (its spec), the journal, ``results/trials.parquet`` and
``results/epochs.parquet`` (``started_at`` in ask order).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import optuna
import polars as pl
from optuna.storages.journal import JournalFileBackend, JournalStorage

from analysis.load import TRIALS
from study.spec import load_spec

EPOCHS = 3
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def true_ll(config: dict) -> float:
    """The synthetic test IS LL of a configuration: lr matters most, then the architecture;
    π's evenness adds a little."""
    pi = np.asarray(config["pi"])
    evenness = -(pi * np.log(pi)).sum() / math.log(len(pi)) if len(pi) > 1 else 1.0
    return (-30.0 + 4.0 * math.log10(config["lr"] / 1e-4)
            + {"mlp": 0.0, "cnn": 1.5, "pixel": 0.5}[config["arch"]] + 0.8 * evenness)


def write_open_study(root: Path, n: int, seed: int = 0, space: str = "open") -> Path:
    """An open search of ``n`` trials over ``space`` in ``root`` (module docstring)."""
    spec = load_spec("open_search_digits", {"study.storage": str(root), "search.space": space})
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps({"spec": {
        "study": {"name": spec.name, "optuna_storage": None},
        "search": {"space": spec.search.space, "metric": spec.search.metric,
                   "mode": spec.search.mode, "sampler": spec.search.sampler},
        "model": spec.model, "budget": spec.budget, "data": {"dataset": spec.data.dataset},
        "claims": {"pi_margin": 1.0}}}))
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    rng = np.random.default_rng(seed)
    trials, epochs = [], []
    seen: set[str] = set()
    while len(seen) < n:
        i = len(seen)
        trial = study.ask()
        config = spec.suggest(trial)
        if config["trial_key"] in seen:  # a redraw: failed, as the searcher does
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        seen.add(config["trial_key"])
        ll = true_ll(config) + rng.normal(0.0, 0.3)
        values = [ll - 6.0 + e + rng.normal(0.0, 0.1) for e in range(EPOCHS)]
        key = config["trial_key"]
        trial.set_user_attr("trial_key", key)  # as the searcher does
        study.tell(trial, values[-1])
        trials.append({**{k: v for k, v in config.items() if k in TRIALS},
                       "study": spec.name, "trial_key": key, "state": "COMPLETED",
                       "test_ll": ll, "test_elbo_mc": ll - 2.0,
                       "started_at": T0 + timedelta(minutes=i)})
        epochs += [{"study": spec.name, "trial_key": key, "epoch": e + 1, "val_elbo_mc": v,
                    "val_loss": -v} for e, v in enumerate(values)]
    (root / "results").mkdir(exist_ok=True)
    pl.DataFrame(trials).write_parquet(root / "results" / "trials.parquet")
    pl.DataFrame(epochs).write_parquet(root / "results" / "epochs.parquet")
    return root


def journal_study(root: Path) -> optuna.Study:
    """The journal's own study, as Optuna loads it."""
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    return optuna.load_study(study_name="open_search_digits", storage=storage)
