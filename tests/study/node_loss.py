"""A node lost mid-trial, for the lost-node tests (`test_lost_nodes`, and the S3 one in
tests/cloud): a study run on a `ray.cluster_utils.Cluster` while a thread removes, ungracefully,
the node of the first trial that writes its marker (`fake_trials`' ``FAKE_MARKER_DIR``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fake_trials

from study import run as runner


def run_losing_a_node(cluster: Any, nodes: list[Any], markers: Path, spec: Any, *,
                      within: float = 120.0, lost: Callable[[Path], str] = lambda m: m.name
                      ) -> tuple[Any, list[str]]:
    """Run ``spec`` while a thread, for up to ``within`` seconds, removes the node (one of
    ``nodes``) named by the first marker written, then records ``lost(marker)`` (the marker's
    name; a test may also wipe that machine's disk there); then Ray and the cluster shut
    down: (outcome, what was recorded)."""
    import ray

    removed: list[str] = []

    def remove_a_node_mid_trial() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not removed:
            for marker in markers.glob("*.marker"):
                node_id = marker.read_text().strip()
                node = next((n for n in nodes if n.node_id == node_id), None)
                if node is not None:
                    cluster.remove_node(node, allow_graceful=False)
                    removed.append(lost(marker))
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=remove_a_node_mid_trial, daemon=True)
    killer.start()
    try:
        outcome = runner.run_study(spec, trial_function=fake_trials.fake_trial)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
    return outcome, removed
