"""`study.patience.patiently` against a fake clock: retried while transient, at most the grace
period, waits growing and capped; other errors at once; then one `Unreachable` line."""

from __future__ import annotations

import pytest

from study.errors import Unreachable
from study.patience import patiently


class Clock:
    def __init__(self) -> None:
        self.now, self.waits = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def flaky(failures: int, error: Exception):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"
    return call, calls


def transient(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


def test_a_transient_error_is_retried_until_the_call_succeeds():
    clock = Clock()
    call, calls = flaky(4, ConnectionError("refused"))
    seen = []
    assert patiently(call, what="the store", grace=60, transient=transient,
                     on_wait=lambda e, s: seen.append((str(e), s)),
                     sleep=clock.sleep, clock=clock) == "done"
    assert len(calls) == 5 and len(clock.waits) == 4 and [e for e, _ in seen] == ["refused"] * 4
    # jittered exponential backoff: each wait in [0.5, 1] x 1, 2, 4, 8 s
    for wait, base in zip(clock.waits, (1, 2, 4, 8), strict=True):
        assert 0.5 * base <= wait <= base


def test_waits_are_capped_and_the_grace_is_kept():
    clock = Clock()
    call, calls = flaky(10**6, ConnectionError("timeout"))
    with pytest.raises(Unreachable) as info:
        patiently(call, what="the object store s3://b/s", grace=100, transient=transient,
                  sleep=clock.sleep, clock=clock, max_wait=16)
    assert max(clock.waits) <= 16 and clock.now == pytest.approx(100)
    assert str(info.value) == ("the object store s3://b/s did not answer for 100 s "
                               "(last error: timeout)")
    assert isinstance(info.value.__cause__, ConnectionError)


def test_an_outage_that_began_earlier_counts_from_its_start():
    clock = Clock()
    clock.now = 50.0
    call, calls = flaky(10**6, ConnectionError("timeout"))
    with pytest.raises(Unreachable, match=r"did not answer for 60 s \(last error: timeout\)"):
        patiently(call, what="the store", grace=60, transient=transient, sleep=clock.sleep,
                  clock=clock, since=-10.0)
    assert len(calls) == 1 and clock.waits == []  # the grace was spent: one try


def test_other_errors_are_raised_at_once():
    clock = Clock()
    call, calls = flaky(1, PermissionError("access denied"))
    with pytest.raises(PermissionError):
        patiently(call, what="x", grace=60, transient=transient, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.waits == []
