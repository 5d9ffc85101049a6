"""`gmmpvae data list|fetch` through study.cli.main: messages and exit codes. Downloads come
only from an http.server on 127.0.0.1 (or a closed port there)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from models import data
from study.cli import main


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _QuietHandler.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def frey_server(tmp_path, monkeypatch):
    """Serves a generated frey_rawface.mat; the frey spec points there, with its pixel digest."""
    served = tmp_path / "served"
    served.mkdir()
    faces = np.random.default_rng(0).integers(0, 256, (560, 1965), dtype=np.uint8)
    scipy.io.savemat(served / "frey_rawface.mat", {"ff": faces})
    digest = hashlib.sha256(np.ascontiguousarray(faces.T).tobytes()).hexdigest()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/frey_rawface.mat"
    spec = data.DATASETS["frey"]
    monkeypatch.setitem(
        data.DATASETS, "frey", replace(spec, files=(replace(spec.files[0], urls=(url,)),))
    )
    monkeypatch.setattr(data, "FREY_PIXEL_SHA256", digest)
    _QuietHandler.hits.clear()
    yield url
    httpd.shutdown()
    httpd.server_close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_list_shows_each_dataset_where_and_what_is_missing(shared_datasets, capsys):
    assert main(["data", "list", "--data-dir", str(shared_datasets)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert f"data folder: {shared_datasets} (from --data-dir)" in out
    assert set(lines) == set(data.DATASETS)
    assert "MISSING" in lines["mnist"] and "train-images-idx3-ubyte.gz" in lines["mnist"]
    assert "t10k" not in lines["mnist"].split("missing")[1].split(";")[0]
    assert "gmmpvae data fetch mnist" in lines["mnist"]
    assert "present" in lines["fashion_mnist"] and "fashion-mnist" in lines["fashion_mnist"]
    assert "images_background_small1.zip" in lines["omniglot"]
    assert "NOT the chardata.mat benchmark" in lines["omniglot"]
    assert "present" in lines["frey"] and "scikit-learn" in lines["digits"]


def test_list_uses_the_environment_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GMMPVAE_DATA_DIR", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert f"data folder: {tmp_path} (from $GMMPVAE_DATA_DIR)" in out
    assert out.count("MISSING") == 4 and "chardata.mat" in out
    assert list(tmp_path.iterdir()) == []  # listing creates nothing


def test_fetch_downloads_atomically_and_reruns_safely(tmp_path, frey_server, capsys):
    root = tmp_path / "data"
    assert main(["data", "fetch", "frey", "--data-dir", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"frey: frey_rawface.mat downloaded from {frey_server}" in out
    assert "sha256 of the pixels verified" in out
    assert _files(root) == ["frey/frey_rawface.mat"]  # no temporary file left
    assert len(data.load_dataset("frey", root).train) == 1_565
    hits = len(_QuietHandler.hits)
    assert main(["data", "fetch", "frey", "digits", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "frey_rawface.mat already present" in out and "digits: bundled" in out
    assert len(_QuietHandler.hits) == hits


def test_fetch_with_a_wrong_checksum_fails_and_keeps_nothing(tmp_path, frey_server, monkeypatch,
                                                             capsys):
    monkeypatch.setattr(data, "FREY_PIXEL_SHA256", "0" * 64)
    assert main(["data", "fetch", "frey", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()  # no progress bar: stderr is not a terminal
    assert "\n" not in err and err.startswith("gmmpvae data: error: could not fetch")
    assert frey_server in err and "expected 0000" in err
    assert not (tmp_path / "d").exists()  # neither a file nor the folders it made


def test_fetch_without_network_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/frey_rawface.mat"
    spec = data.DATASETS["frey"]
    monkeypatch.setitem(
        data.DATASETS, "frey", replace(spec, files=(replace(spec.files[0], urls=(url,)),))
    )
    assert main(["data", "fetch", "frey", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and url in err and "refused" in err
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["data", "fetch", "cifar"], "unknown dataset cifar"),
        (["data", "fetch"], "name a dataset"),
        (["data"], "gmmpvae data list"),
    ],
)
def test_usage_errors_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err
