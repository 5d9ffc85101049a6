"""`Flaky`: an Optuna storage that goes away when a test says so (issue 17) — a public
``optuna.storages.BaseStorage`` around a real one (in-memory, a journal) that hands every call
on and fails the ones a test picks with the error the RDB storage raises for a lost connection
(``StorageInternalError`` from SQLAlchemy's ``OperationalError``): before the call (nothing
written) or after it (written, the answer lost: a commit cut in flight). Tests install it
through our own seam, `study.optuna_study.open_storage`; Optuna's classes are not patched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc as sa_exc
from optuna.storages import BaseStorage

WRITES = ("create_new_trial", "set_trial_param", "set_trial_state_values",
          "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr")
PUBLIC = [m for m in dir(BaseStorage) if not m.startswith("_")]


def lost_connection() -> Exception:
    cause = sa_exc.OperationalError("UPDATE trials SET state=%s", {},
                                    Exception("server closed the connection unexpectedly"))
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the "
                                                     "commit.") from cause
    except optuna.exceptions.StorageInternalError as exc:
        return exc


class Flaky(BaseStorage):
    """``inner`` behind a switch: ``fail(name, call_number) -> "before" | "after" | None``."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.fail: Callable[[str, int], str | None] = lambda name, n: None
        self.calls: dict[str, int] = {}
        self.failures = 0


def _delegate(name: str) -> Callable[..., Any]:
    def call(self: Flaky, *args: Any, **kwargs: Any) -> Any:
        n = self.calls[name] = self.calls.get(name, 0) + 1
        when = self.fail(name, n)
        if when == "before":
            self.failures += 1
            raise lost_connection()
        out = getattr(self.inner, name)(*args, **kwargs)
        if when == "after":
            self.failures += 1
            raise lost_connection()
        return out
    return call


for _name in PUBLIC:
    setattr(Flaky, _name, _delegate(_name))
Flaky.__abstractmethods__ = frozenset()
