"""A study's fields, validated: the frozen ``StudySpec`` (data and validation only).

`from_raw` validates the nested dict of a study file (`study.study_file` reads files, presets
and command-line overrides) before any trial starts: a bad value raises one ``ValueError`` of
one line that names the file (or "command line"), the field, the value and what is accepted.
The grid axes of ``[search.grid]`` are the search space's (`search_spaces.grids`), checked here
by building every planned trial (`_check_trials`).
Why not pydantic: most of the checks are rules between fields and against the search space
(grid vs. sampler, seeds of open spaces, ASHA vs. end-of-run metrics, device vs. GPUs, every
planned trial built), which would be model validators anyway; the [model]/[budget] fields are
checked by ModelConfig/TrainConfig themselves; and pydantic's multi-line ValidationError would
need a translation layer to keep our one line naming the file or "command line", the field,
the value and what is accepted. ``StudySpec.to_dict()`` / ``from_dict()``
round-trip the resolved spec (saved as ``study.json`` in the study folder for ``resume``).

Sections and fields (every field optional unless marked *required*):

``[study]``
  ``name``            folder-safe name (default: the file stem / preset name)
  ``storage``         results folder or pyarrow filesystem URI (s3://, gs://, file://…);
                      default ``studies/<name>``; a local path is made absolute
  ``optuna_storage``  Optuna's storage: absent → the journal file ``optuna.journal`` in the
                      study folder; or an RDB URL (``sqlite:///…``, ``postgresql://…``,
                      ``mysql://…``), or a path ending in ``.journal``. Required when
                      ``storage`` is a URI (a journal file needs a shared POSIX file system)
  ``address``         Ray: absent → start Ray here; ``"auto"`` or ``"host:port"`` (or
                      ``"ray://host:port"``) → join that cluster
  ``connect_timeout`` seconds to wait for the cluster at ``address`` to answer (> 0, default 60)
``[data]``
  ``dataset``         mnist, fashion_mnist, omniglot, frey or digits (*required* unless the grid
                      lists ``datasets``)
  ``data_dir``        data folder (default: ``$GMMPVAE_DATA_DIR`` or the per-user cache)
``[search]``
  ``space``           *required*: a name of ``search_spaces.names()``
  ``sampler``         grid (grid spaces; the default there) or tpe (the default for open
                      spaces), random, cmaes (needs the ``cmaes`` package), qmc, gp, nsga2
  ``seeds``           seeds per configuration, 0 … seeds − 1 (default 3 for grids; open spaces:
                      1, the only accepted value — each Optuna trial trains one seed, 0)
  ``num_samples``     open spaces: *required*, trials to sample (>= 1); grids: the grid's size
                      (computed; a different value is an error)
  ``sampler_seed``    seed of the Optuna sampler (default: none, nondeterministic)
  ``metric``          val_loss (default), val_re, val_kl, best_val_loss, train_loss (reported
                      every epoch), test_ll, test_elbo_bound, test_elbo_mc, test_re, test_kl
                      (reported at the end of a trial; not with ASHA)
  ``mode``            the metric's own: max for test_ll / test_elbo_*, min otherwise (checked)
``[search.grid]``     list overrides of a grid space (``datasets``, ``archs``, ``Ks``, ``Ms``,
                      ``include_vae``, ``estimators``, figure4: ``pis``): see
                      ``search_spaces.grids``
``[model]``           ModelConfig fields fixed for every trial (e.g. latent_dim, hidden_dim,
                      kl_estimator, arch); not ``image_shape`` / ``likelihood`` (they follow
                      from the dataset) and not the fields the grid sets
``[budget]``          TrainConfig fields fixed for every trial: max_epochs, warmup_epochs,
                      patience, is_samples, lr, batch_size, max_train_examples,
                      max_test_examples, eval_memory_mb, device, precision (fp32, bf16; tf32
                      needs resources.gpus_per_trial > 0), compile (not dataset / data_dir: see
                      [data]; not seed: see search.seeds). Missing ones keep TrainConfig's
                      defaults, the paper's protocol
``[scheduler]``
  ``kind``            fifo (default) or asha
  ``max_t``           ASHA's longest run in epochs (default: budget.max_epochs)
  ``grace_period``    epochs before ASHA may stop a trial (default: budget.warmup_epochs if
                      set and >= 1, else 10; at most max_t)
  ``reduction_factor`` ASHA's η (> 1, default 4). The three are ignored by fifo
``[resources]``
  ``cpus_per_trial``  CPUs per trial (> 0, default 1)
  ``gpus_per_trial``  GPUs per trial (>= 0, default 0; fractions below 1, whole numbers above)
  ``max_concurrent``  most trials at once (>= 1; default: as many as fit)
``[failure]``
  ``retries``         times a failed trial is retried (Ray's ``FailureConfig.max_failures``;
                      >= 0, default 2)
  ``stranded_grace``  seconds a study waits while no node can hold one of its trials (every
                      worker lost) before it ends, resumable (> 0, default 600)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import search_spaces
from models.config import DATASETS, MODEL_FIELDS, TRAIN_FIELDS, ModelConfig, TrainConfig
from search_spaces import KEY_FIELD, trial_key
from study.store.layout import OPTUNA_JOURNAL, STUDY_FILE, is_uri, normalise, one_line

SAMPLERS = ("grid", "tpe", "random", "cmaes", "qmc", "gp", "nsga2")
SCHEDULERS = ("fifo", "asha")
# metric -> its natural mode; the first five are reported every epoch.
METRICS = {
    "val_loss": "min", "val_re": "min", "val_kl": "min", "best_val_loss": "min",
    "train_loss": "min", "test_ll": "max", "test_elbo_bound": "max", "test_elbo_mc": "max",
    "test_re": "min", "test_kl": "min",
}
EPOCH_METRICS = ("val_loss", "val_re", "val_kl", "best_val_loss", "train_loss")
MODEL_KEYS = tuple(sorted(MODEL_FIELDS - {"image_shape", "likelihood"}))
BUDGET_KEYS = tuple(sorted(TRAIN_FIELDS - {"dataset", "data_dir", "seed"}))
KEYS: dict[str, tuple[str, ...]] = {
    "study": ("name", "storage", "optuna_storage", "address", "connect_timeout"),
    "data": ("dataset", "data_dir"),
    "search": ("space", "sampler", "seeds", "num_samples", "sampler_seed", "metric", "mode",
               "grid"),
    "model": MODEL_KEYS,
    "budget": BUDGET_KEYS,
    "scheduler": ("kind", "grace_period", "reduction_factor", "max_t"),
    "resources": ("cpus_per_trial", "gpus_per_trial", "max_concurrent"),
    "failure": ("retries", "stranded_grace"),
}

MAX_NAME = 200  # a folder name (NAME_MAX is 255 bytes), with room for suffixes such as .torn-…
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ADDRESS_RE = re.compile(r"^(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}$")
_RDB_RE = re.compile(r"^(sqlite|postgresql|mysql)(\+\w+)?://")


class _Context:
    """Where values come from, to say so in error messages."""

    def __init__(self, origin: str, overridden: set[str] | None = None) -> None:
        self.origin = origin
        self.overridden = overridden or set()

    def error(self, text: str, field_name: str | None = None) -> ValueError:
        where = "command line" if field_name in self.overridden else self.origin
        return ValueError(one_line(f"{where}: {text}"))

    def bad(self, name: str, value: Any, accepted: str) -> ValueError:
        return self.error(f"{name}={value!r} is invalid: expected {accepted}", name)

    def qualify(self, exc: Exception) -> ValueError:
        """A config's error ("latent_dim=0 is invalid: …") with its section ("model.")."""
        text = str(exc)
        name = re.match(r"[A-Za-z_]*", text).group(0)  # type: ignore[union-attr]
        section = ("search." if name == "grid" else "model." if name in MODEL_KEYS
                   else "budget." if name in BUDGET_KEYS
                   else "data." if name in ("dataset", "data_dir") else "")
        full = section + name if section and name != "grid" else None
        return self.error(section + text, full)


# ----------------------------------------------------------------------------- checks

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _take(ctx: _Context, table: dict[str, Any], section: str, key: str, ok, accepted: str,
          default: Any = None) -> Any:
    """``table[key]`` if present (checked with ``ok``), else ``default``."""
    if key not in table or table[key] is None:
        return default
    value = table[key]
    if not ok(value):
        raise ctx.bad(f"{section}.{key}", value, accepted)
    return value


def _table(ctx: _Context, raw: dict[str, Any], section: str) -> dict[str, Any]:
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise ctx.error(f"[{section}] must be a table of fields, not {table!r}", section)
    unknown = sorted(set(table) - set(KEYS[section]))
    if unknown:
        raise ctx.error(
            f"unknown key {section}.{unknown[0]}: expected one of {', '.join(KEYS[section])}",
            f"{section}.{unknown[0]}",
        )
    return table


# ----------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class StudySection:
    name: str
    storage: str
    optuna_storage: str | None = None
    address: str | None = None
    connect_timeout: float = 60.0


@dataclass(frozen=True)
class DataSection:
    dataset: str | None
    data_dir: str | None = None


@dataclass(frozen=True)
class SearchSection:
    space: str
    sampler: str
    seeds: int
    num_samples: int
    sampler_seed: int | None
    metric: str
    mode: str
    grid: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerSection:
    kind: str
    grace_period: int
    reduction_factor: float
    max_t: int


@dataclass(frozen=True)
class ResourcesSection:
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None = None


@dataclass(frozen=True)
class FailureSection:
    retries: int
    stranded_grace: float = 600.0


def _study_section(ctx: _Context, t: dict[str, Any], default_name: str | None) -> StudySection:
    name = _take(ctx, t, "study", "name",
                 lambda v: isinstance(v, str) and _NAME_RE.match(v) and len(v) <= MAX_NAME,
                 f"letters, digits, '_', '.', '-' (a folder name of at most {MAX_NAME} "
                 "characters)", default_name)
    if name is None:
        raise ctx.error("study.name is missing: expected a folder-safe name", "study.name")
    storage = _take(ctx, t, "study", "storage", lambda v: isinstance(v, str) and v.strip(),
                    "a folder or a pyarrow URI", f"studies/{name}")
    storage = normalise(storage)
    optuna_storage = _take(
        ctx, t, "study", "optuna_storage",
        lambda v: isinstance(v, str) and (bool(_RDB_RE.match(v)) or v.endswith(".journal")),
        "an RDB URL (sqlite:///..., postgresql://..., mysql://...) or a .journal file path",
    )
    if optuna_storage is not None and not _RDB_RE.match(optuna_storage):
        optuna_storage = normalise(optuna_storage)
    if optuna_storage is None and is_uri(storage):
        raise ctx.error(
            f"study.optuna_storage is missing: expected an RDB URL or a .journal path on a "
            f"shared file system when study.storage={storage!r} is a URI", "study.optuna_storage")
    address = _take(ctx, t, "study", "address",
                    lambda v: isinstance(v, str) and (v == "auto" or _ADDRESS_RE.match(v)),
                    "'auto', 'host:port' or 'ray://host:port' (absent: start Ray here)")
    timeout = _take(ctx, t, "study", "connect_timeout", lambda v: _is_num(v) and v > 0,
                    "a number of seconds > 0", 60.0)
    return StudySection(name, storage, optuna_storage, address, float(timeout))


def _data_section(ctx: _Context, t: dict[str, Any]) -> DataSection:
    dataset = _take(ctx, t, "data", "dataset", lambda v: v in DATASETS,
                    "one of " + ", ".join(DATASETS))
    data_dir = _take(ctx, t, "data", "data_dir", lambda v: isinstance(v, str) and v.strip(),
                     "a folder path")
    return DataSection(dataset, None if data_dir is None else normalise(data_dir))


def _config_table(ctx: _Context, t: dict[str, Any], section: str) -> dict[str, Any]:
    """[model] / [budget]: checked by building the config with the other fields' defaults."""
    table = dict(t)
    try:
        if section == "model":
            probe = dict(table)
            if isinstance(table.get("pi"), list) and "M" not in table:
                probe["M"] = len(table["pi"])  # pi alone fixes M
            ModelConfig.from_dict(probe)
        else:
            TrainConfig.from_dict(table)
    except ValueError as exc:
        raise ctx.qualify(exc) from None
    return table


def _search_section(ctx: _Context, t: dict[str, Any]) -> SearchSection:
    if t.get("space") is None:
        raise ctx.error("search.space is missing: expected one of "
                        + ", ".join(search_spaces.names()), "search.space")
    space_name = _take(ctx, t, "search", "space", lambda v: v in search_spaces.names(),
                       "one of " + ", ".join(search_spaces.names()))
    kind = search_spaces.get(space_name).kind
    open_samplers = ", ".join(s for s in SAMPLERS if s != "grid")
    sampler = _take(ctx, t, "search", "sampler", lambda v: v in SAMPLERS,
                    "one of " + ", ".join(SAMPLERS), "grid" if kind == "grid" else "tpe")
    if kind == "grid" and sampler != "grid":
        raise ctx.bad("search.sampler", sampler,
                      f"'grid' for the grid space '{space_name}' (samplers {open_samplers} "
                      f"need an open space: open, mixture_weights, quickstart_open)")
    if kind == "open" and sampler == "grid":
        raise ctx.bad("search.sampler", sampler,
                      f"one of {open_samplers} for the open space '{space_name}' (grid needs "
                      f"a grid space: table1, figure3, figure4, quickstart)")
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ctx.bad("search.sampler", sampler,
                      "a sampler whose package is installed (cmaes needs: pip install cmaes)")
    seeds = _take(ctx, t, "search", "seeds", lambda v: _is_int(v) and v >= 1,
                  "an integer >= 1", 3 if kind == "grid" else 1)
    if kind == "open" and seeds != 1:
        raise ctx.bad("search.seeds", seeds, f"1 for the open space '{space_name}' (each "
                      "Optuna trial trains one seed)")
    num_samples = _take(ctx, t, "search", "num_samples", lambda v: _is_int(v) and v >= 1,
                        "an integer >= 1")
    if kind == "open" and num_samples is None:
        raise ctx.error(f"search.num_samples is missing: expected an integer >= 1 for the "
                        f"open space '{space_name}'", "search.num_samples")
    sampler_seed = _take(ctx, t, "search", "sampler_seed", lambda v: _is_int(v) and v >= 0,
                         "an integer >= 0")
    metric = _take(ctx, t, "search", "metric", lambda v: v in METRICS,
                   "one of " + ", ".join(METRICS), "val_loss")
    mode = _take(ctx, t, "search", "mode", lambda v: v == METRICS[metric],
                 f"{METRICS[metric]!r} for search.metric={metric!r}", METRICS[metric])
    grid = _take(ctx, t, "search", "grid", lambda v: isinstance(v, dict),
                 "a table of list overrides", {})
    if grid and kind == "open":
        raise ctx.error(f"search.grid is only for grid spaces: the space '{space_name}' is "
                        f"open (remove [search.grid])", "search.grid")
    return SearchSection(space_name, sampler, seeds, num_samples or 0, sampler_seed, metric,
                         mode, dict(grid))


def _scheduler_section(ctx: _Context, t: dict[str, Any], budget: dict[str, Any],
                       metric: str) -> SchedulerSection:
    kind = _take(ctx, t, "scheduler", "kind", lambda v: v in SCHEDULERS,
                 "one of " + ", ".join(SCHEDULERS), "fifo")
    max_t = _take(ctx, t, "scheduler", "max_t", lambda v: _is_int(v) and v >= 1,
                  "an integer >= 1", budget.get("max_epochs", TrainConfig.max_epochs))
    warmup = budget.get("warmup_epochs", 0)
    grace = _take(ctx, t, "scheduler", "grace_period", lambda v: _is_int(v) and 1 <= v <= max_t,
                  f"an integer in [1, max_t={max_t}]", min(max_t, warmup if warmup >= 1 else 10))
    factor = _take(ctx, t, "scheduler", "reduction_factor", lambda v: _is_num(v) and v > 1,
                   "a number > 1", 4.0)
    if kind == "asha" and metric not in EPOCH_METRICS:
        raise ctx.bad("scheduler.kind", kind, f"fifo with search.metric={metric!r}, which is "
                      f"reported only at the end (asha needs one of {', '.join(EPOCH_METRICS)})")
    return SchedulerSection(kind, grace, float(factor), max_t)


def _resources_section(ctx: _Context, t: dict[str, Any]) -> ResourcesSection:
    cpus = _take(ctx, t, "resources", "cpus_per_trial", lambda v: _is_num(v) and v > 0,
                 "a number > 0", 1.0)
    gpus = _take(ctx, t, "resources", "gpus_per_trial",
                 lambda v: _is_num(v) and v >= 0 and (v <= 1 or float(v).is_integer()),
                 "a number >= 0: a fraction up to 1, or a whole number", 0.0)
    concurrent = _take(ctx, t, "resources", "max_concurrent", lambda v: _is_int(v) and v >= 1,
                       "an integer >= 1 (absent: as many as fit)")
    return ResourcesSection(float(cpus), float(gpus), concurrent)


# ----------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class StudySpec:
    """A validated study: what to run (``plan`` / ``suggest``), where, and with what."""

    study: StudySection
    data: DataSection
    search: SearchSection
    model: dict[str, Any]
    budget: dict[str, Any]
    scheduler: SchedulerSection
    resources: ResourcesSection
    failure: FailureSection
    source: str = field(default="", compare=False)

    # -- convenience
    @property
    def name(self) -> str:
        return self.study.name

    @property
    def storage(self) -> str:
        """The study folder: a local absolute path or a pyarrow URI."""
        return self.study.storage

    @property
    def search_space(self) -> search_spaces.SearchSpace:
        return search_spaces.get(self.search.space)

    @property
    def is_grid(self) -> bool:
        return self.search_space.kind == "grid"

    @property
    def optuna_storage_url(self) -> str:
        """An RDB URL, or the path of the Optuna journal file (``optuna.journal`` in the study
        folder unless the study names one)."""
        if self.study.optuna_storage is not None:
            return self.study.optuna_storage
        return os.path.join(self.study.storage, OPTUNA_JOURNAL)

    @property
    def optuna_storage_is_journal(self) -> bool:
        return not _RDB_RE.match(self.optuna_storage_url)

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as TOML-like nested plain data (JSON-safe), for ``study.json``."""
        return {
            "study": vars(self.study).copy(),
            "data": vars(self.data).copy(),
            "search": {**vars(self.search), "grid": json.loads(json.dumps(self.search.grid))},
            "model": json.loads(json.dumps(self.model)),
            "budget": dict(self.budget),
            "scheduler": vars(self.scheduler).copy(),
            "resources": vars(self.resources).copy(),
            "failure": vars(self.failure).copy(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = STUDY_FILE) -> StudySpec:
        """Rebuild (and re-validate) a spec saved with ``to_dict``."""
        return from_raw(data, origin)

    # -- trials
    def fixed_trial_fields(self) -> dict[str, Any]:
        """The flat fields every trial gets: dataset and data_dir ([data]), [budget], [model]."""
        fixed: dict[str, Any] = {}
        if self.data.dataset is not None:
            fixed["dataset"] = self.data.dataset
        if self.data.data_dir is not None:
            fixed["data_dir"] = self.data.data_dir
        fixed.update(self.budget)
        fixed.update(json.loads(json.dumps(self.model)))
        return fixed

    def plan(self) -> list[dict[str, Any]] | None:
        """Every trial of a grid study in order: a complete flat config plus its ``trial_key``;
        None for open searches (their trials come from ``suggest``)."""
        if not self.is_grid:
            return None
        configs = self.search_space.enumerate(
            self.fixed_trial_fields(), self.search.seeds, self.search.grid
        )
        return [{**c, KEY_FIELD: trial_key(c)} for c in configs]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial of an open search, chosen define-by-run with an Optuna ``trial``: the
        complete flat config plus its ``trial_key``."""
        config = self.search_space.suggest(trial, self.fixed_trial_fields())
        return {**config, KEY_FIELD: trial_key(config)}


def from_raw(raw: dict[str, Any], origin: str, overridden: set[str] | None = None,
             default_name: str | None = None) -> StudySpec:
    """Validate the nested dict of a study file and build the spec (trials included); a
    problem is one ``ValueError`` line naming ``origin`` (or "command line" for a field in
    ``overridden``), the field, the value and what is accepted."""
    ctx = _Context(origin, overridden)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ctx.error(f"unknown section [{unknown[0]}]: expected some of "
                        + ", ".join(f"[{s}]" for s in KEYS), unknown[0])
    tables = {section: _table(ctx, raw, section) for section in KEYS}
    study = _study_section(ctx, tables["study"], default_name)
    data = _data_section(ctx, tables["data"])
    search = _search_section(ctx, tables["search"])
    model = _config_table(ctx, tables["model"], "model")
    budget = _config_table(ctx, tables["budget"], "budget")
    scheduler = _scheduler_section(ctx, tables["scheduler"], budget, search.metric)
    resources = _resources_section(ctx, tables["resources"])
    retries = _take(ctx, tables["failure"], "failure", "retries", lambda v: _is_int(v) and v >= 0,
                    "an integer >= 0", 2)
    grace = _take(ctx, tables["failure"], "failure", "stranded_grace",
                  lambda v: _is_num(v) and v > 0, "a number of seconds > 0", 600.0)
    device = budget.get("device", "auto")
    if resources.gpus_per_trial == 0 and device not in ("auto", "cpu"):
        raise ctx.bad("budget.device", device, "auto or cpu when resources.gpus_per_trial = 0 "
                      "(Ray gives a trial no GPU then)")
    if resources.gpus_per_trial == 0 and budget.get("precision") == "tf32":
        raise ctx.bad("budget.precision", "tf32", "fp32 or bf16 when resources.gpus_per_trial "
                      "= 0 (tf32 needs a GPU)")
    if data.dataset is None and "datasets" not in search.grid:
        raise ctx.error("data.dataset is missing: expected one of " + ", ".join(DATASETS),
                        "data.dataset")
    spec = StudySpec(study, data, search, model, budget, scheduler, resources,
                     FailureSection(retries, float(grace)), source=ctx.origin)
    return _check_trials(spec, ctx)


def _check_trials(spec: StudySpec, ctx: _Context) -> StudySpec:
    """Build every planned trial (grids) or a few sampled ones (open spaces) as a TrialConfig,
    so that a bad combination fails now, not in the hundredth trial."""
    if spec.is_grid:
        try:
            plan = spec.plan() or []
        except ValueError as exc:
            raise ctx.qualify(exc) from None
        keys = [t[KEY_FIELD] for t in plan]
        if len(set(keys)) != len(keys):
            raise ctx.error(f"search.grid={spec.search.grid!r} gives the same configuration "
                            f"twice: expected distinct values in every list", "search.grid")
        given = spec.search.num_samples
        if given and given != len(plan):
            raise ctx.bad("search.num_samples", given, f"{len(plan)} (the size of the grid "
                          f"'{spec.search.space}') or nothing")
        search = SearchSection(**{**vars(spec.search), "num_samples": len(plan)})
        return StudySpec(**{**vars(spec), "search": search})
    import optuna  # lazily: a handful of sampled trials checks the open space with the fixed fields

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(8):
            trial = probe.ask()
            spec.suggest(trial)
            probe.tell(trial, 0.0)
    except ValueError as exc:
        raise ctx.qualify(exc) from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    return spec
