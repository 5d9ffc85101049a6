"""The Ray Tune engine of a study: the only package that imports Ray.

- `engine`: the one entry (`engine.run`): Ray set up, the Tuner assembled and run, Ray shut
  down; Ray-free at the top;
- `session`: Ray for one study (embedded on 127.0.0.1, or a cluster joined), Tune kept quiet;
  Ray-free at the top;
- `cluster`: the driver's calls into Ray (start, join, slots, saved experiment state);
- `tuner`: the Tuner assembled in one place (searcher, scheduler, resources, failures,
  storage), new or restored;
- `trainable`: one trial in a Ray worker; `searcher`: the Tune searcher over the study's
  Optuna study (`study.optuna_study`); `callback`: the driver's progress lines and records of
  trials that could not write their own; `stopper`: ends a study no node can hold a trial of
  (and one whose server stayed away); `live`: the live view of the running trials;
  `trackers`: the logger callback feeding the study's experiment trackers (`study.watch`).

**Where Ray is first imported.** Ray reads its loopback switch once, when it is first imported
(`study.tune.session`), so it must not be imported before the session has set its
environment, nor at all by the commands that never run a trial (a dry run, ``status``, which
reads the trials' running markers instead of Tune's state, ``report``, the repair code). So this
package imports none of its modules, `engine` and `session` import no Ray at the top, and the
modules that do (`cluster`, `tuner` and what it imports) are imported inside the functions that
run once Ray's environment is set: `session.session` and `engine.run`. Those are plain
``from study.tune import …`` statements, which readers, IDEs and type checkers follow.
"""
