"""The live view's state, ETA and rendering, and its Tune callback driven by hand (no Ray
started: the callback reads only what trials report)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from study.watch.live_view import LiveState, Screen, clock, render


def test_rates_eta_and_counts_from_reported_epochs():
    state = LiveState("s", total=5, started=0.0, finished={"old": "COMPLETED"})
    # trial a: epochs 1..5 reported one every 2 s -> 0.5 epochs/s; b: 1 epoch/s
    for i in range(1, 6):
        state.result("a", 10, i, 100.0 - i, 2.0, now=2.0 * i)
    for i in range(1, 4):
        state.result("b", 20, i, 50.0, 1.0, now=10.0 + i)
    assert state.running["a"].rate() == pytest.approx(4 / 8)
    assert state.running["b"].rate() == pytest.approx(1.0)
    assert state.counts() == {"done": 1, "running": 2, "failed": 0, "pending": 2}
    # left: a 5, b 17, two pending trials at the running trials' mean max_epochs 15
    assert state.eta() == pytest.approx((5 + 17 + 2 * 15) / 1.5)
    state.ended("b", "ERROR")
    assert state.counts() == {"done": 1, "running": 1, "failed": 1, "pending": 2}


def test_a_single_result_rates_by_its_epoch_seconds_and_no_result_has_no_eta():
    state = LiveState("s", total=2, started=0.0)
    state.started_trial("a", 10)
    assert state.eta() is None and state.running["a"].rate() is None
    state.result("a", 10, 1, 3.0, 0.25, now=1.0)
    assert state.running["a"].rate() == pytest.approx(4.0)


def test_render_lines():
    state = LiveState("quick", total=3, started=100.0)
    state.result("k-long-key", 60, 12, 98.1234, 0.5, now=150.0)
    state.result("k-long-key", 60, 13, 97.5, 0.5, now=150.5)
    lines = render(state, now=3823.0)
    assert lines[0] == ("study quick  0 done · 1 running · 2 pending · 0 failed  elapsed "
                        f"1:02:03  ETA {clock((47 + 2 * 60) / 2.0)}")
    assert lines[1] == "  k-long-key  epoch 13/60  best val 97.500  2.00 epochs/s"
    assert clock(None) == "—" and clock(59.6) == "0:01:00"


def test_screen_in_place_on_a_tty_and_periodic_blocks_otherwise():
    out = io.StringIO()
    tty = Screen(out, tty=True)
    tty.show(["a", "b"], now=0.0)
    assert not tty.due(0.2) and tty.due(0.6)
    tty.show(["c"], now=1.0)
    assert out.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\n"
    tty.clear()
    assert out.getvalue().endswith("c\n\x1b[1F\x1b[J") and tty.drawn == 0
    plain_out = io.StringIO()
    plain = Screen(plain_out, tty=False, interval=30)
    plain.show(["x"], now=0.0)
    assert not plain.due(29.0) and plain.due(30.0)
    plain.clear()
    assert plain_out.getvalue() == "x\n"


def test_callback_counts_trials_from_tune_events():
    from study.process_state import Driving, driving
    from study.tune.live import LiveProgress

    now = [0.0]
    out = io.StringIO()
    cb = LiveProgress("s", total=3)
    cb.clock = lambda: now[0]
    with driving(Driving(quiet=False, finished={"done-before": "COMPLETED"},
                         screen=Screen(out, tty=False, interval=10))):
        cb.setup()
    trial = SimpleNamespace(config={"trial_key": "t1", "max_epochs": 4}, trial_id="x")
    cb.on_trial_start(0, [trial], trial)
    for epoch in (1, 2):
        now[0] = float(epoch)
        cb.on_trial_result(0, [trial], trial, {"epoch": epoch, "best_val_loss": 5.0 - epoch,
                                                "seconds": 1.0})
        cb.on_step_end(0, [trial])
    assert out.getvalue().splitlines()[0].startswith(
        "study s  1 done · 1 running · 1 pending · 0 failed")
    cb.on_trial_result(0, [trial], trial, {"trial_state": "ERROR", "epochs_run": 2})
    cb.on_trial_complete(0, [trial], trial)
    assert cb.state.counts() == {"done": 1, "running": 0, "failed": 1, "pending": 1}
    # pickled with the Tuner: only the name and the size travel
    import pickle

    copy = pickle.loads(pickle.dumps(cb))
    assert (copy.name, copy.total, copy.active) == ("s", 3, False)


def test_quiet_keeps_the_callback_silent():
    from study.process_state import Driving, driving
    from study.tune.live import LiveProgress

    out = io.StringIO()
    cb = LiveProgress("s", total=1)
    with driving(Driving(quiet=True, screen=Screen(out, tty=False, interval=0))):
        cb.setup()
    cb.on_step_end(0, [])
    assert out.getvalue() == ""


def test_callback_costs_microseconds_per_event():
    """The driver-side cost that trials never see: a result plus a step, timed."""
    import time

    from study.process_state import Driving, driving
    from study.tune.live import LiveProgress

    cb = LiveProgress("s", total=50)
    with driving(Driving(quiet=False, screen=Screen(io.StringIO(), tty=True))):
        cb.setup()
    trials = [SimpleNamespace(config={"trial_key": f"t{i}", "max_epochs": 5000}, trial_id=str(i))
              for i in range(8)]
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        t = trials[i % 8]
        cb.on_trial_result(0, trials, t, {"epoch": i // 8 + 1, "best_val_loss": 1.0,
                                          "seconds": 0.1})
        cb.on_step_end(0, trials)
    per_event = (time.perf_counter() - start) / n * 1e6
    print(f"live progress: {per_event:.1f} µs per result + step")
    assert per_event < 2000  # generous: a trial's epoch is seconds to hours
