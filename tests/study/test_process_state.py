"""The only module-level mutable state of `study/` is `study.process_state`'s (what Ray's process
model forces), and `study.ending.Ending` records why an experiment ended."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from study.ending import Ending
from study.errors import Unreachable
from study.process_state import Driving, driven, driving

STUDY = Path(__file__).resolve().parents[2] / "study"
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update",
            "setdefault", "add", "discard", "set"}


def written_globals(path: Path) -> set[str]:
    """Module-level names of ``path`` that its functions write to: declared ``global``,
    mutated by a method call (``X.append(…)``, ``X.set()``, …), or assigned an item."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name)}
    written: set[str] = set()
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Global):
                written.update(node.names)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.attr in MUTATORS:
                written.add(node.func.value.id)
            elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = node.targets if isinstance(node, ast.Assign | ast.Delete) \
                    else [node.target]
                written.update(t.value.id for t in targets
                               if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name))
    return written & names


def test_only_process_state_keeps_state_at_module_level():
    found = {str(p.relative_to(STUDY.parent)): sorted(written_globals(p))
             for p in sorted(STUDY.rglob("*.py")) if written_globals(p)}
    assert found == {"study/process_state.py": ["_DRIVING", "_OUTAGES"]}


def test_the_scan_finds_a_module_flag(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("_STOPPED = []\n_N = {}\n\ndef stop():\n    _STOPPED.append(1)\n"
                      "\ndef count(k):\n    _N[k] = 1\n")
    assert written_globals(module) == {"_STOPPED", "_N"}


def test_an_ending_keeps_its_first_reasons_and_says_why():
    ending = Ending()
    assert ending.finished and not ending.stopped and ending.unreachable() is None
    ending.strand()
    assert ending.stopped and ending.stranded and ending.why() == "no node can hold it"
    assert ending.unreachable() is None  # stranded: resumable, not an error
    first = Unreachable("the Optuna database x did not answer for 3 s", hint="resume it")
    ending.give_up(first)
    ending.give_up(Unreachable("later"))
    assert ending.unreachable() is first
    assert ending.why() == "the Optuna database does not answer"
    ending.lose_lease("the object store of s3://b/q did not answer for 9 s (last error: x)")
    assert ending.why() == "the study's store does not answer"
    assert ending.unreachable() is first  # the database's line says how to continue


def test_a_lost_lease_is_raised_in_its_own_words():
    ending = Ending()
    ending.lose_lease("the study's lease (s3://b/q/driver.lease) was taken over by pid 7")
    error = ending.unreachable()
    assert isinstance(error, Unreachable) and error.hint is None
    assert str(error) == "the study's lease (s3://b/q/driver.lease) was taken over by pid 7"
    assert str(error.with_hint("resume it")).endswith("pid 7; resume it")


def test_the_experiment_in_course_is_the_innermost_one():
    outer, inner = Driving(quiet=False), Driving()
    with driving(outer):
        with driving(inner):
            assert driven() is inner
        assert driven() is outer
    assert driven() is not outer and driven().quiet  # outside: a quiet one of its own


def test_an_unreachable_pickles_with_its_hint():
    import pickle

    error = pickle.loads(pickle.dumps(Unreachable("x did not answer", hint="resume it")))
    assert (str(error), error.hint) == ("x did not answer; resume it", "resume it")
    assert error.with_hint("other") is error
    with pytest.raises(Unreachable, match="^x did not answer; resume it$"):
        raise error
