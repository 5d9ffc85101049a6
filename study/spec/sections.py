"""The sections of a study file, each validated: `parse` turns the nested dict of a study file
into its ten sections (``[study]``, ``[data]``, ``[search]``, ``[model]``, ``[budget]``,
``[scheduler]``, ``[resources]``, ``[failure]``, ``[claims]``, ``[tracking]`` — the last one
parsed by `study.watch.tracking`) or raises one ``ValueError`` of one line that names the file (or
"command line"), the field, the value and what is accepted.

Every field is documented in docs/STUDY_FILE.md (kept by hand with this file: a field added or
changed here is changed there). The [model]/[budget] fields are checked by
ModelConfig/TrainConfig themselves. Why not pydantic: most of the checks are rules between
fields and against the search space (grid vs. sampler, seeds of open spaces, ASHA vs.
end-of-run metrics, device vs. GPUs), which would be model validators anyway, and pydantic's
multi-line ValidationError would need a translation layer to keep our one line.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass, field
from typing import Any

import search_spaces
from models.config import DATASETS, MODEL_FIELDS, TRAIN_FIELDS, ModelConfig, TrainConfig
from study.patience import OUTAGE_GRACE
from study.store.layout import is_uri, normalise, one_line
from study.watch import tracking as tracking_spec

SAMPLERS = ("grid", "tpe", "random", "cmaes", "qmc", "gp", "nsga2")
SCHEDULERS = ("fifo", "asha")
# metric -> its natural mode; the first six (EPOCH_METRICS) are reported every epoch.
METRICS = {
    "val_loss": "min", "val_re": "min", "val_kl": "min", "best_val_loss": "min",
    "train_loss": "min", "val_elbo_mc": "max",
    "test_ll": "max", "test_elbo_bound": "max", "test_elbo_mc": "max",
    "test_re": "min", "test_kl": "min",
}
EPOCH_METRICS = ("val_loss", "val_re", "val_kl", "best_val_loss", "train_loss", "val_elbo_mc")
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
    "failure": ("retries", "stranded_grace", "outage_grace"),
    "tracking": tracking_spec.KEYS,
    "claims": ("pi_margin", "smallest_effect"),
}

MAX_NAME = 200  # a folder name (NAME_MAX is 255 bytes), with room for suffixes such as .torn-…
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ADDRESS_RE = re.compile(r"^(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}$")
RDB_RE = re.compile(r"^(sqlite|postgresql|mysql)(\+\w+)?://")


class Context:
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


def _take(ctx: Context, table: dict[str, Any], section: str, key: str, ok, accepted: str,
          default: Any = None) -> Any:
    """``table[key]`` if present (checked with ``ok``), else ``default``."""
    if key not in table or table[key] is None:
        return default
    value = table[key]
    if not ok(value):
        raise ctx.bad(f"{section}.{key}", value, accepted)
    return value


def _table(ctx: Context, raw: dict[str, Any], section: str) -> dict[str, Any]:
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
    outage_grace: float = OUTAGE_GRACE


@dataclass(frozen=True)
class ClaimsSection:
    """Settings of the report's claims (analysis.claims): claim (c)'s equivalence margin and
    the smallest effect of interest of the minimum-effect tests and the power (None: the
    published effect where there is one, else analysis.claims_paper's default)."""

    pi_margin: float = 0.3
    smallest_effect: float | None = None


def _study_section(ctx: Context, t: dict[str, Any], default_name: str | None) -> StudySection:
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
        lambda v: isinstance(v, str) and (bool(RDB_RE.match(v)) or v.endswith(".journal")),
        "an RDB URL (sqlite:///..., postgresql://..., mysql://...) or a .journal file path",
    )
    if optuna_storage is not None and not RDB_RE.match(optuna_storage):
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


def _data_section(ctx: Context, t: dict[str, Any]) -> DataSection:
    dataset = _take(ctx, t, "data", "dataset", lambda v: v in DATASETS,
                    "one of " + ", ".join(DATASETS))
    data_dir = _take(ctx, t, "data", "data_dir", lambda v: isinstance(v, str) and v.strip(),
                     "a folder path")
    return DataSection(dataset, None if data_dir is None else normalise(data_dir))


def _config_table(ctx: Context, t: dict[str, Any], section: str) -> dict[str, Any]:
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


def _search_section(ctx: Context, t: dict[str, Any]) -> SearchSection:
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


def _scheduler_section(ctx: Context, t: dict[str, Any], budget: dict[str, Any],
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


def _resources_section(ctx: Context, t: dict[str, Any]) -> ResourcesSection:
    cpus = _take(ctx, t, "resources", "cpus_per_trial", lambda v: _is_num(v) and v > 0,
                 "a number > 0", 1.0)
    gpus = _take(ctx, t, "resources", "gpus_per_trial",
                 lambda v: _is_num(v) and v >= 0 and (v <= 1 or float(v).is_integer()),
                 "a number >= 0: a fraction up to 1, or a whole number", 0.0)
    concurrent = _take(ctx, t, "resources", "max_concurrent", lambda v: _is_int(v) and v >= 1,
                       "an integer >= 1 (absent: as many as fit)")
    return ResourcesSection(float(cpus), float(gpus), concurrent)


# ----------------------------------------------------------------------------- all sections


def parse(raw: dict[str, Any], origin: str, overridden: set[str] | None = None,
          default_name: str | None = None) -> tuple[Context, dict[str, Any]]:
    """Validate the nested dict of a study file section by section, and the rules between
    sections; ``(context, {section name: validated section})``, the fields of `StudySpec`. A
    problem is one ``ValueError`` line naming ``origin`` (or "command line" for a field in
    ``overridden``), the field, the value and what is accepted."""
    ctx = Context(origin, overridden)
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
    outage = _take(ctx, tables["failure"], "failure", "outage_grace",
                   lambda v: _is_num(v) and v > 0, "a number of seconds > 0", OUTAGE_GRACE)
    pi_margin = _take(ctx, tables["claims"], "claims", "pi_margin",
                      lambda v: _is_num(v) and v > 0, "a number of nats > 0", 0.3)
    smallest_effect = _take(ctx, tables["claims"], "claims", "smallest_effect",
                            lambda v: _is_num(v) and v > 0, "a number of nats > 0", None)
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
    return ctx, {"study": study, "data": data, "search": search, "model": model,
                 "budget": budget, "scheduler": scheduler, "resources": resources,
                 "failure": FailureSection(retries, float(grace), float(outage)),
                 "tracking": tracking_spec.parse(tables["tracking"], ctx.bad),
                 "claims": ClaimsSection(float(pi_margin), None if smallest_effect is None
                                         else float(smallest_effect))}
