"""Watching a study: the live view of its running trials, its experiment trackers
(TensorBoard, MLflow, W&B) and the export of a finished study into them. Nothing here imports
Ray (its Tune callbacks are `study.tune.live` and `study.tune.trackers`).

- `tracking`: the ``[tracking]`` section, its flags, the extras it needs;
- `trackers`: the writers, one interface (start, log, end), keyed by ``trial_key``;
- `export`: a finished study's Parquet files replayed into a tracker;
- `live_view`: the running trials' state, its ETA, its rendering on a terminal.
"""
