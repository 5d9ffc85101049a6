"""Checks a study must pass before Ray starts: storage, the Optuna storage, the data, and
resources — `validate`, run once per command; what it learned (`Validated`: the study folder,
opened once, and this machine's trial slots) is handed on, so nothing is checked twice.

No Ray here: these run before an embedded Ray is started, so a study that cannot run fails in
one line (`UsageError`, exit status 2) with nothing started and nothing written. The cluster's
own resource check, after joining it, is in `study.tune.session`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
import torch

from models import precision
from models.config import TrialConfig
from models.data import dataset_status
from models.sizing import check_fits
from study import store
from study.errors import UsageError
from study.spec.study_spec import StudySpec
from study.store import StudyFolder
from study.watch import tracking


def local_capacity(need_gpus: bool) -> tuple[int, int]:
    """(CPUs, GPUs) of this machine; GPUs are counted (with torch) only when asked for."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    gpus = 0
    if need_gpus:
        gpus = torch.cuda.device_count()
    return cpus, gpus


def node_slots(nodes: list[tuple[float, float]], cpus: float, gpus: float) -> int:
    """How many trials of ``cpus`` CPUs and ``gpus`` GPUs fit at once on nodes of the given
    (CPU, GPU) capacities."""
    total = 0
    for node_cpus, node_gpus in nodes:
        fit = math.floor(node_cpus / cpus + 1e-9) if cpus > 0 else 10**6
        if gpus > 0:
            fit = min(fit, math.floor(node_gpus / gpus + 1e-9))
        total += max(0, fit)
    return total


def resource_error(spec: StudySpec, where: str | None, largest: tuple[float, float]
                    ) -> UsageError:
    """No node can hold one trial; ``where`` None means this machine (embedded Ray)."""
    r = spec.resources
    field_name = "gpus_per_trial" if r.gpus_per_trial > largest[1] else "cpus_per_trial"
    value = getattr(r, field_name)
    if where is None:
        has = f"this machine has {largest[0]:g} CPU(s) and {largest[1]:g} GPU(s)"
    else:
        has = (f"no node {where} has {r.cpus_per_trial:g} CPU(s) and {r.gpus_per_trial:g} "
               f"GPU(s) (the largest: {largest[0]:g} CPU(s), {largest[1]:g} GPU(s))")
    return UsageError(f"resources.{field_name}={value:g} cannot be satisfied: {has}")


def check_local_resources(spec: StudySpec) -> int:
    """The trial slots of this machine for an embedded Ray; `UsageError` when none fits."""
    cpus, gpus = local_capacity(spec.resources.gpus_per_trial > 0)
    slots = node_slots([(cpus, gpus)], spec.resources.cpus_per_trial,
                       spec.resources.gpus_per_trial)
    if slots < 1:
        raise resource_error(spec, None, (cpus, gpus))
    return slots


def check_optuna_storage(spec: StudySpec) -> None:
    """An RDB URL must be reachable (connected to, nothing written); a sqlite file's folder
    must exist. Journal files are checked with the study's storage."""
    url = spec.optuna_storage_url
    if spec.optuna_storage_is_journal:
        if spec.study.optuna_storage is not None:  # a journal outside the study folder
            parent = Path(url).parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not os.access(parent, os.W_OK):
                raise UsageError(f"study.optuna_storage={url!r} is not writable ({parent})")
        return
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).expanduser().parent.is_dir():
            raise UsageError(f"study.optuna_storage={url!r} is not reachable: the folder "
                             f"{Path(path).parent} does not exist")
        return
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
    except Exception as exc:  # driver missing, refused, bad credentials, …
        # SQLAlchemy's message without its "(Background on this error at: …)" link
        first = " ".join(str(exc).split("(Background on this error")[0].split())[:240]
        raise UsageError(f"study.optuna_storage={hide_password(url)!r} is not reachable: "
                         f"{first}") from None


def hide_password(url: str) -> str:
    """An RDB URL as it may be printed: its password replaced by ``***``."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: nothing to hide it by
        return url


def check_new(spec: StudySpec, folder: StudyFolder | None = None) -> None:
    """The study folder (``folder``: opened already) holds no study yet."""
    folder = folder or StudyFolder.open(spec.storage)
    if folder.exists(store.STUDY_FILE):
        raise UsageError(f"{spec.storage} already holds a study: continue it with "
                         f"`gmmpvae resume {spec.storage}`, or choose another --name/--storage")


# The deepest path a trial creates: Tune's trial folder (key, '_', Tune's 8+-character trial
# id) with a checkpoint in it; the study's own trial folder is shallower.
_DEEPEST = ("tune", "{key}_xxxxxxxxxxxx", "checkpoint_000000", "checkpoint.pt.tmp-xxxxxxxx")


def check_paths(spec: StudySpec) -> None:
    """Every folder and file name a trial will create fits the file system (NAME_MAX per name,
    PATH_MAX for the whole path): a 300-character name fails here, not after Ray started."""
    if store.is_uri(spec.storage):
        return
    root = store.local_path(spec.storage)
    name_max, path_max = 255, 4096  # Linux; the file system's own limits where it says
    existing = Path(root)
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        pass  # a path too long to stat: the checks below name it
    keys = [t["trial_key"] for t in spec.plan() or []] or ["x" * 64]  # open: keys ≈ 60 chars
    key = max(keys, key=len)
    parts = [p for p in Path(root).parts if p != "/"]
    deepest = [p.format(key=key) for p in _DEEPEST]
    for part in parts + deepest:
        if len(part.encode()) > name_max:
            raise UsageError(f"study.storage: the name {part[:40]!r}… is "
                             f"{len(part.encode())} bytes; this file system allows "
                             f"{name_max}: choose a shorter --name/--storage")
    longest = len(os.path.join(root, *deepest).encode())
    if longest >= path_max:
        raise UsageError(f"study.storage={spec.storage[:60]!r}…: the trials' paths would be "
                         f"{longest} bytes; this file system allows {path_max - 1}: choose a "
                         "shorter --storage")


def check_data(spec: StudySpec) -> None:
    """The datasets the trials read are present in their data folder (on this machine; on a
    cluster every node must see the same folder, and a trial that does not finds out in one
    line, see `study.tune.trainable`)."""
    needed: dict[str | None, set[str]] = {}
    for config in spec.plan() or [spec.fixed_trial_fields()]:
        if config.get("dataset"):
            needed.setdefault(config.get("data_dir"), set()).add(config["dataset"])
    for data_dir, names in needed.items():
        root, origin, statuses = dataset_status(data_dir)
        present = {s.name for s in statuses if s.present}
        for name in sorted(names - present):
            raise UsageError(f"data.dataset={name!r} is not in the data folder {root} "
                             f"({origin}): fetch it with `gmmpvae data fetch {name} "
                             f"--data-dir {root}`, or set data.data_dir")


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_sizes(spec: StudySpec, available: int | str | None, where: str = "this machine"
                ) -> None:
    """Every distinct model of the plan (an open search: its fixed fields at the largest K of
    a sample) fits in ``available`` bytes (None: this machine's memory; "skip": checked after
    joining the cluster, against its largest node). A lower bound: see `models.sizing`."""
    if available == "skip":
        return
    limit = memory_bytes() if available is None else int(available)
    seen: set[str] = set()
    for config in spec.plan() or []:
        cfg = TrialConfig.from_flat({k: v for k, v in config.items() if k != "trial_key"})
        # The bound depends on the model and the batch only: once per distinct pair.
        model_key = json.dumps([cfg.model.to_dict(), cfg.train.batch_size], sort_keys=True,
                               default=str)
        if model_key in seen:
            continue
        seen.add(model_key)
        try:
            check_fits(cfg, limit, where)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def check_bf16_here(spec: StudySpec) -> None:
    """bf16 trials that run on this machine's CPU (embedded Ray, no GPU per trial) are refused
    here as the trial would refuse them (models.precision.host_bf16_refusal)."""
    if (spec.budget.get("precision") != "bf16" or spec.study.address is not None
            or spec.resources.gpus_per_trial > 0):
        return
    line = precision.host_bf16_refusal()
    if line is not None:
        raise UsageError(f"budget.precision='bf16': {line}")


def check_tracking(spec: StudySpec) -> None:
    """Each tracker of ``[tracking]`` installed (one line naming the extra) and writable."""
    tracking.check_available(spec.tracking.enabled)
    tracking.check_storage(spec.tracking, spec.storage)


@dataclass(frozen=True)
class Validated:
    """What `validate` learned, handed on: the study folder (resolved once) and, for an
    embedded Ray, this machine's trial slots (None when joining a cluster: its slots are
    counted after joining, `study.tune.session`)."""

    folder: StudyFolder
    slots: int | None


def validate(spec: StudySpec, *, new: bool = True) -> Validated:
    """Every check that needs no Ray: storage (and, for a new study, that its folder holds
    none yet), the Optuna storage, the data, and for an embedded Ray the resources (its
    slots). Run once per command; its result is handed on."""
    check_paths(spec)
    try:
        store.check_writable(spec.storage)
        folder = StudyFolder.open(spec.storage)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if new:
        check_new(spec, folder)
    check_optuna_storage(spec)
    check_tracking(spec)
    check_data(spec)
    check_sizes(spec, None if spec.study.address is None else "skip")
    check_bf16_here(spec)
    slots = check_local_resources(spec) if spec.study.address is None else None
    return Validated(folder, slots)
