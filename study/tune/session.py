"""Ray for one study: an embedded Ray on 127.0.0.1 or a cluster joined, and Tune kept quiet.
Nothing here imports Ray at the top: `session` imports it (through `study.tune.cluster`) inside
the environment Ray must first be imported in, and `tune_states` only when there is a saved
experiment to read.

``session(spec, verbose)`` is the one entry point: it starts a fresh embedded Ray
(``address="local"``, so a Ray left running on the machine is never joined silently; loopback
only, no dashboard, sized to the machine) or joins ``spec.study.address`` (our packages shipped
to the workers with the job's runtime environment, so a node needs only the dependencies),
counts the trial slots of its live nodes, yields them, and shuts down what it started. A Ray
this process initialised itself (a test, a notebook) is used as it is.

Everything this module changes is scoped: environment variables are set for the duration of a
call and restored (`scoped_environ`), Ray's loggers are quietened only inside `quiet_tune`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
from collections.abc import Iterator

from study import store
from study.errors import UsageError
from study.logs import quiet_loggers
from study.spec import StudySpec
from study.spec.checks import check_sizes, resource_error

# Ray 2.60 (checked up to it): ray.init(address="local") puts its node, GCS and raylet on the
# machine's outward address; no public argument puts them on 127.0.0.1 (the private
# ``_node_ip_address`` is even resolved back to the outward address). The one switch that does
# is this variable, meant for macOS/Windows laptops, read once when ``ray`` is first imported
# and inherited by the processes ray.init spawns. See `_loopback_environ`; the test
# tests/study/tune/test_session.py::test_embedded_ray_listens_on_loopback_only fails if a Ray
# upgrade changes this.
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Tune's own console output and per-result files, set only while a Tuner runs (public
# environment variables of ray.tune, read at run time): no per-result loggers (result.json,
# progress.csv, TensorBoard: every epoch is in the trial records already, and they cost the
# driver a third of its CPU), no warning about frequent state snapshots (we checkpoint every
# epoch), and the classic reporter (the new one prints a header even when silent).
_QUIET_TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                   "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
# Without ``verbose``, no traceback of a trial that failed while Tune was busy (Ray prints the
# error of a result nobody fetched; Tune records and retries the trial: its line says so).
_SILENT_TUNE_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_IGNORE_UNHANDLED_ERRORS": "1"}
# Without per-result loggers, reading a saved experiment warns that it finds no metrics: fine.
_NOISY_LOGGERS = ("ray.tune.analysis.experiment_analysis",)


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (a value the user has already
    set wins), then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


DRIVER_LOG = "driver.log"
# Ray's and Tune's loggers (ray.tune, ray.train, … are its children), and Optuna's (its RDB
# storage warns, with the SQL, when a query fails during a database outage that we announce
# in one line of our own)
_LOGGED = ("ray", "optuna")


@contextlib.contextmanager
def quiet_tune(verbose: bool, study_dir: str | None = None) -> Iterator[None]:
    """Tune's console output and per-result loggers off while a Tuner runs or a saved
    experiment is read (all of it on with ``verbose``, except the per-result files). With a
    ``study_dir`` and without ``verbose``, what Ray, Tune and Optuna log (the tracebacks and
    warnings of failures we handle: a lost node, a checkpoint already deleted, a store or a
    database that does not answer) goes to ``driver.log`` in `study.store.log_folder`
    (``STUDY/logs/``; a local folder for a study on an object store) instead of the terminal,
    for the duration of the block only."""
    env = {**_QUIET_TUNE_ENV, **({} if verbose else _SILENT_TUNE_ENV)}
    with (scoped_environ(env), _logged_to_file(None if verbose else study_dir),
          quiet_loggers(_NOISY_LOGGERS, logging.ERROR)):
        yield


@contextlib.contextmanager
def _logged_to_file(study_dir: str | None) -> Iterator[None]:
    """Ray's and Optuna's loggers write to the study's log file instead of the terminal for
    the block: their console handlers taken off, a file handler added and propagation off,
    then all put back (standard `logging` calls on the loggers' public names)."""
    if study_dir is None:
        yield
        return
    folder = store.log_folder(study_dir)
    os.makedirs(folder, exist_ok=True)
    handler = logging.FileHandler(os.path.join(folder, DRIVER_LOG), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in _LOGGED:
        lg = logging.getLogger(name)
        saved.append((lg, lg.propagate, list(lg.handlers)))
        for h in list(lg.handlers):  # Ray's own stderr handler
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, propagate, handlers in saved:
            lg.removeHandler(handler)
            for h in handlers:
                if h not in lg.handlers:
                    lg.addHandler(h)
            lg.propagate = propagate
        handler.close()


def _loopback_environ() -> contextlib.AbstractContextManager[None]:
    """The loopback workaround (see `_LOOPBACK_ENV`): the variable is set while Ray is first
    imported and while ray.init spawns its processes, then put back."""
    return scoped_environ(_LOOPBACK_ENV)


def _prefetch_imports() -> threading.Thread:
    """Import what the Tuner needs while Ray starts (ray.init mostly waits on its processes):
    about a second and a half less before the first trial."""
    def work() -> None:
        for name in ("ray.tune", "ray.tune.schedulers", "optuna", "study.tune.trainable",
                     "study.tune.searcher", "study.tune.tuner"):
            try:
                importlib.import_module(name)
            except Exception:  # the main thread imports it again and reports the problem
                return

    thread = threading.Thread(target=work, name="gmmpvae-prefetch", daemon=True)
    thread.start()
    return thread


def is_loopback(address: str | None) -> bool:
    """Whether a ``host:port`` address names this machine's loopback interface."""
    if not address or address == "auto":
        return False
    host = address.removeprefix("ray://").rpartition(":")[0]
    return host in ("127.0.0.1", "localhost", "::1")


def probe_address(address: str, timeout: float) -> None:
    """A ``host:port`` address must accept a TCP connection within ``timeout`` seconds (Ray
    itself keeps retrying for minutes); ``auto`` is left to Ray (it reads the local session)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(f"study.address={address!r}: no Ray cluster answers there within "
                         f"{timeout:g} s ({exc.strerror or type(exc).__name__}); check the "
                         "address and that the head node runs (`ray start --head`); "
                         "--connect-timeout sets the wait") from None


AUTH_HINT = ("set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, "
             "RAY_AUTH_TOKEN_PATH, or the default token file; `ray get-auth-token` on the head "
             "node prints it) in the driver's environment")


def join_error(address: str, exc: BaseException, stderr: str = "") -> str:
    """One line for a failed join; an authentication refusal (in the exception or in what
    Ray's client wrote to stderr meanwhile) is named as such."""
    text = " ".join(str(exc).split())
    lowered = f"{text} {stderr}".lower()
    if any(word in lowered for word in ("invalidauthtoken", "unauthenticated",
                                        "authentication token")):
        return (f"study.address={address!r}: the cluster refused this driver's "
                f"authentication (it runs with token authentication): {AUTH_HINT}")
    return f"study.address={address!r}: cannot join the Ray cluster: {text[:300]}"


@contextlib.contextmanager
def session(spec: StudySpec, verbose: bool = False) -> Iterator[int]:
    """Ray for the study's driver; yields the number of trial slots of its live nodes. When no
    node can hold one trial: disconnect and raise `UsageError`. Ray started here is shut down
    when the block ends, however it ends."""
    embedded = spec.study.address is None
    # A cluster on this machine's loopback (nodes started with `ray start --node-ip-address
    # 127.0.0.1`): the driver stays on 127.0.0.1 too, by the same workaround as an embedded Ray.
    loopback = embedded or is_loopback(spec.study.address)
    with _loopback_environ() if loopback else contextlib.nullcontext():
        prefetch = _prefetch_imports()
        from study.tune import cluster  # Ray is first imported here, inside the environment

        started = cluster.start(spec, verbose)
    try:
        slots, nodes = cluster.slots(spec)
        if slots < 1:
            where = f"of the cluster at {spec.study.address}" if not embedded else (
                "of the running Ray")
            raise resource_error(spec, where, max(nodes, default=(0.0, 0.0)))
        memory = None if embedded else cluster.largest_memory()
        if memory:
            check_sizes(spec, memory, f"the largest node of the cluster at {spec.study.address}")
        prefetch.join()
        yield slots
    finally:
        if started:
            cluster.shutdown()


def tune_states(study_dir: str) -> dict[str, str]:
    """trial_key → Tune's status (PENDING, RUNNING, TERMINATED, ERROR, …) from the saved
    experiment state ({} when there is none, without importing Ray). Needs no running Ray."""
    path = store.join(str(study_dir), store.TUNE_DIR)
    fs, fs_path = store.filesystem(path)
    if not store.exists(fs, fs_path):
        return {}
    from study.tune import cluster  # Ray, once a saved experiment is there to read

    with quiet_tune(verbose=True):
        return cluster.experiment_states(path)
