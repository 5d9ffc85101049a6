"""The stranded-study stopper, on scripted cluster resources and a scripted clock."""

from __future__ import annotations

from study.process_state import Driving, driven, driving
from study.tune.stopper import StrandedStopper, can_place


def test_can_place():
    assert can_place({"CPU": 1.0, "GPU": 0.0}, {"CPU": 1.0})
    assert can_place({"CPU": 1.0, "GPU": 0.25}, {"CPU": 4.0, "GPU": 0.25})
    assert not can_place({"CPU": 1.0}, {"memory": 1e9})
    assert not can_place({"CPU": 1.0, "GPU": 1.0}, {"CPU": 16.0})


def test_stops_after_grace_and_forgives_a_node_that_returns():
    clock = [0.0]
    cluster = [{"CPU": 2.0}]
    stopper = StrandedStopper({"CPU": 1.0}, grace_seconds=600, resources=lambda: cluster[0],
                              clock=lambda: clock[0])
    with driving(Driving()) as experiment:  # (as `study.tune.engine.run` sets it)
        assert not stopper.stop_all()
        cluster[0] = {"CPU": 0.0}          # every worker gone (a 0-CPU head remains)
        clock[0] = 10.0
        assert not stopper.stop_all()      # stranded from t = 10
        clock[0] = 400.0
        assert not stopper.stop_all()
        cluster[0] = {"CPU": 1.0}          # a node came back: the grace starts over next time
        clock[0] = 401.0                   # (the cluster is asked at most once a second)
        assert not stopper.stop_all() and stopper.stranded_since is None
        cluster[0] = {}
        clock[0] = 500.0
        assert not stopper.stop_all()
        clock[0] = 1099.0
        assert not stopper.stop_all()
        clock[0] = 1100.0
        assert stopper.stop_all() and stopper.stopped
        assert experiment.ending.stopped  # what the searcher and the driver's callback read
    assert not driven().ending.stopped  # the next experiment starts unstopped
    assert stopper("trial", {}) is False


def test_a_server_away_stops_the_experiment():
    """The searcher gave up on the database, or the lease was lost: the next step ends it."""
    stopper = StrandedStopper({"CPU": 1.0}, resources=lambda: {"CPU": 2.0})
    with driving(Driving()) as experiment:
        assert not stopper.stop_all()
        experiment.ending.lose_lease("the object store of s3://b/q did not answer for 9 s")
        assert stopper.stop_all() and not experiment.ending.stranded
