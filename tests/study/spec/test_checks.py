"""study.spec.checks: the checks before anything starts, each on its own (no Ray); `validate`
runs them once and hands on what it learned."""

from __future__ import annotations

import math

import pyarrow.fs as pafs
import pytest

from study import store
from study.errors import UsageError
from study.spec import Validated, checks, load_spec, validate


def spec_at(tmp_path, **overrides):
    return load_spec("quickstart", {"study.storage": str(tmp_path / "s"), **overrides})


def brute_slots(nodes, cpus, gpus):
    """Trials that fit, placed one at a time on any node with room (independent of the
    floor formula)."""
    total = 0
    for node_cpus, node_gpus in nodes:
        free_c, free_g = node_cpus, node_gpus
        while free_c + 1e-9 >= cpus and free_g + 1e-9 >= gpus and total < 10**5:
            free_c, free_g = free_c - cpus, free_g - gpus
            total += 1
            if cpus == 0 and gpus == 0:
                break
    return total


@pytest.mark.parametrize("cpus, gpus", [(1, 0), (2, 0), (0.5, 0), (1, 0.5), (1, 1), (3, 0.25)])
def test_node_slots_match_placing_trials_one_by_one(cpus, gpus):
    nodes = [(8.0, 2.0), (3.0, 0.0), (4.0, 1.0), (1.0, 1.0)]
    assert checks.node_slots(nodes, cpus, gpus) == brute_slots(nodes, cpus, gpus)


def test_local_resources_give_this_machines_slots(tmp_path):
    spec = spec_at(tmp_path)
    cpus, gpus = checks.local_capacity(False)
    assert gpus == 0 and cpus >= 1
    assert checks.check_local_resources(spec) == math.floor(cpus / spec.resources.cpus_per_trial)
    big = spec_at(tmp_path, **{"resources.cpus_per_trial": float(cpus + 1)})
    with pytest.raises(UsageError, match=r"^resources.cpus_per_trial=.* cannot be satisfied: "
                                         r"this machine has"):
        checks.check_local_resources(big)


def test_a_resource_error_names_the_field_that_does_not_fit(tmp_path):
    spec = spec_at(tmp_path, **{"resources.gpus_per_trial": 2.0})
    err = checks.resource_error(spec, "of the cluster at x:1", (16.0, 1.0))
    assert str(err).startswith("resources.gpus_per_trial=2 cannot be satisfied: no node of the "
                               "cluster at x:1 has")


def test_check_new_refuses_a_folder_holding_a_study(tmp_path):
    spec = spec_at(tmp_path)
    checks.check_new(spec)  # nothing there yet
    store.write_json(pafs.LocalFileSystem(), str(tmp_path / "s" / "study.json"), {"spec": {}})
    folder = store.StudyFolder.open(spec.storage)
    for args in ((spec,), (spec, folder)):
        with pytest.raises(UsageError, match="already holds a study: continue it with "
                                             "`gmmpvae resume"):
            checks.check_new(*args)


def test_validate_hands_on_the_folder_and_the_slots(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "s")})
    validated = validate(spec, new=True)
    assert isinstance(validated, Validated)
    assert validated.folder.root == store.local_path(spec.storage)
    assert validated.folder.location == spec.storage
    assert validated.slots == checks.check_local_resources(spec)
    assert not (tmp_path / "s").exists()  # validation writes nothing


def test_validate_leaves_a_clusters_slots_to_the_session(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "s"),
                                    "study.address": "127.0.0.1:1"})
    assert validate(spec, new=True).slots is None


def test_a_too_long_name_fails_before_anything_starts(tmp_path):
    spec = spec_at(tmp_path, **{"study.storage": str(tmp_path / ("n" * 300))})
    with pytest.raises(UsageError, match="300 bytes"):
        checks.check_paths(spec)


def test_an_unreachable_sqlite_folder_is_named(tmp_path):
    url = f"sqlite:///{tmp_path}/none/optuna.db"
    spec = spec_at(tmp_path, **{"study.optuna_storage": url})
    with pytest.raises(UsageError, match="is not reachable: the folder .* does not exist"):
        checks.check_optuna_storage(spec)
