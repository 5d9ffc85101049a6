"""models/data.py and models/datasets_io.py: loaders on generated files of the real structure,
fixed splits and bits, dynamic binarization, one-line errors for bad files, atomic fetches
(from a local http.server on 127.0.0.1 only), and the real files of ../shared/datasets."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import struct
import threading
import urllib.request
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from models import data
from models import datasets_io as dio
from models.data import DataError, load_dataset

MNIST_TRAIN, MNIST_TEST = "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"


def _pattern(count: int, step: int) -> np.ndarray:
    """(count, 28, 28) uint8 images, image i constant (i * step) % 256: cheap to gzip."""
    values = (np.arange(count) * step % 256).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(values[:, None, None], (count, 28, 28)))


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory) -> Path:
    """A data folder with canonical-size IDX files under mnist/ and fashion-mnist/."""
    root = tmp_path_factory.mktemp("idx")
    for folder in ("mnist", "fashion-mnist"):
        (root / folder).mkdir()
        dio.write_idx_images(root / folder / MNIST_TRAIN, _pattern(60_000, 1))
        dio.write_idx_images(root / folder / MNIST_TEST, _pattern(10_000, 7))
    return root


def _faces() -> np.ndarray:
    """ff (560, 1965) uint8: face j, row-major 28x20, pixel (r, c) = (20r + c + j) % 256."""
    faces = (np.arange(560)[None, :] + np.arange(1965)[:, None]) % 256  # (1965, 560)
    return np.ascontiguousarray(faces.T.astype(np.uint8))


def _write_frey(root: Path, **variables: np.ndarray) -> Path:
    path = root / "frey" / "frey_rawface.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables or {"ff": _faces()})
    return path


def _png(ink: np.ndarray) -> bytes:
    """A 105x105 1-bit PNG, black (0) where ``ink`` is True, as in Omniglot."""
    buf = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _write_omniglot_zip(path: Path, top: str, alphabets: list[str], drawers: int = 5) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    ink = np.zeros((105, 105), dtype=bool)
    ink[:, :15] = True  # a solid stroke over the first 4 output columns (15 = 4 * 3.75)
    n = 0
    with zipfile.ZipFile(path, "w") as archive:
        for alphabet in alphabets:
            for d in range(drawers):
                archive.writestr(f"{top}/{alphabet}/character01/0001_{d:02d}.png", _png(ink))
                n += 1
    return n


def _one_line_error(exc_info, *needles: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message
    return message


# ----------------------------------------------------------------------------- loaders

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_datasets_split_values_and_fixed_bits(mnist_files, name):
    d = load_dataset(name, mnist_files)
    assert (d.train.shape, d.val.shape, d.test.shape) == ((50_000, 784),) + ((10_000, 784),) * 2
    assert d.image_shape == (28, 28) and d.likelihood == "bernoulli" and d.binary
    assert d.train.dtype == torch.float32
    expected = torch.arange(50_000, dtype=torch.float32) % 256 / 255
    assert torch.equal(d.train[:, 0], expected)  # train = the first 50,000, grey levels k/255
    assert set(d.val.unique().tolist()) <= {0.0, 1.0}
    # val = the last 10,000: image 50,000 + j is all 0 where its value is 0 and all 1 at 255
    val_values = (50_000 + torch.arange(10_000)) % 256
    assert d.val[val_values == 0].sum() == 0 and d.val[val_values == 255].min() == 1
    test_values = torch.arange(10_000) * 7 % 256
    assert d.test[test_values == 0].sum() == 0 and d.test[test_values == 255].min() == 1
    mid = d.test[test_values == 128]
    assert 0.45 < mid.mean().item() < 0.55  # really Bernoulli(0.5) bits
    again = load_dataset(name, mnist_files, max_train=100, max_test=30)
    assert again.train.shape == (100, 784) and again.val.shape == again.test.shape == (30, 784)
    assert torch.equal(again.val, d.val[:30]) and torch.equal(again.test, d.test[:30])


def test_digits_offline_split_and_stable_bits():
    d = load_dataset("digits")
    assert (len(d.train), len(d.val), len(d.test)) == (1_297, 250, 250)
    assert d.image_shape == (8, 8) and d.train.shape[1] == 64 and d.binary
    assert d.train.min() == 0 and d.train.max() == 1
    assert not set(d.train.unique().tolist()) <= {0.0, 1.0}  # grey levels, k/16
    assert torch.equal(d.train * 16, (d.train * 16).round())
    again = load_dataset("digits", max_train=10, max_test=5)
    assert torch.equal(again.val, d.val[:5]) and torch.equal(again.test, d.test[:5])
    assert torch.equal(again.train, d.train[:10])
    # the fixed bits do not depend on torch's global seed (the trial seed)
    torch.manual_seed(12345)
    assert torch.equal(load_dataset("digits").test, d.test)


def test_train_batches_are_shuffled_rebinarised_and_reproducible():
    d = load_dataset("digits")

    def epoch(gen: torch.Generator) -> list[torch.Tensor]:
        return list(d.train_batches(100, gen))

    gen = torch.Generator().manual_seed(0)
    first, second = epoch(gen), epoch(gen)
    assert [len(b) for b in first] == [100] * 12 + [97]
    assert all(set(b.unique().tolist()) <= {0.0, 1.0} for b in first)
    assert not torch.equal(torch.cat(first), torch.cat(second))  # new order and new bits
    replay = epoch(torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(first, replay, strict=True))
    mean = torch.stack([torch.cat(epoch(gen)).mean() for _ in range(3)]).mean()
    assert abs(mean - d.train.mean()) < 0.01  # bits are Bernoulli(grey level)
    with pytest.raises(ValueError, match="batch_size"):
        next(d.train_batches(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_are_drawn_on_the_training_device():
    d = load_dataset("digits", device="cuda")
    assert d.train.is_cuda and d.val.is_cuda and d.test.is_cuda
    assert torch.equal(d.test.cpu(), load_dataset("digits").test)  # same fixed bits as on CPU
    gen = torch.Generator(device="cuda").manual_seed(0)
    batches = list(d.train_batches(100, gen))
    assert all(b.is_cuda for b in batches) and sum(len(b) for b in batches) == len(d.train)


def test_frey_split_orientation_and_grey_levels(tmp_path):
    _write_frey(tmp_path)
    d = load_dataset("frey", tmp_path)
    assert (d.train.shape, d.val.shape, d.test.shape) == ((1_565, 560), (200, 560), (200, 560))
    assert d.image_shape == (28, 20) and d.likelihood == "logistic" and not d.binary
    assert torch.equal(d.train * 255, (d.train * 255).round())  # values k/255
    face = (d.test[0] * 255).round().reshape(28, 20)
    assert (face[0, 1] - face[0, 0]) % 256 == 1 and (face[1, 0] - face[0, 0]) % 256 == 20
    faces = torch.cat([d.train, d.val, d.test]) * 255
    assert len(set(faces[:, 0].round().int().tolist())) == 256  # nothing lost or repeated...
    assert torch.equal(load_dataset("frey", tmp_path).val, d.val)  # ...and a fixed split
    batches = torch.cat(list(d.train_batches(500, torch.Generator().manual_seed(1))))
    assert torch.equal(batches.sort(0).values, d.train.sort(0).values)  # shuffled, not binarised


def test_split_is_fixed_disjoint_and_complete():
    parts = data._split(100, (70, 20, 10))
    assert [len(p) for p in parts] == [70, 20, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert all((a == b).all() for a, b in zip(parts, data._split(100, (70, 20, 10)), strict=True))


def test_omniglot_chardata_is_read_in_fortran_order(tmp_path):
    """Image n has one pixel on at (row n % 28, column n // 28 % 28), stored as MATLAB does
    (column-major); the loader must give it back upright in C order (row r, column c → 28r + c)."""
    def columns(n: int) -> np.ndarray:
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        idx = np.arange(n)
        images[idx, idx % 28, idx // 28 % 28] = 1
        return images.reshape(n, 784, order="F").T  # (784, n), as chardata.mat stores them

    folder = tmp_path / "omniglot"
    folder.mkdir()
    scipy.io.savemat(folder / "chardata.mat",
                     {"data": columns(24_345), "testdata": columns(8_070), "target": np.zeros(3)})
    d = load_dataset("omniglot", tmp_path)
    assert (len(d.train), len(d.val), len(d.test)) == (23_000, 1_345, 8_070)
    on = d.test[:100].argmax(1)  # (100,) flat C-order position of the one pixel
    n = torch.arange(100)
    assert torch.equal(on, (n % 28) * 28 + n // 28 % 28)
    assert "chardata.mat" in d.source and "benchmark" in d.source


def test_area_downscale_is_exact_area_averaging():
    x = np.random.default_rng(0).random((3, 105, 105), dtype=np.float32)
    # reference: 4x nearest upsampling makes 420 = 28 * 15, then plain 15x15 block means
    up = x.repeat(4, axis=1).repeat(4, axis=2)
    reference = up.reshape(3, 28, 15, 28, 15).mean(axis=(2, 4))
    np.testing.assert_allclose(dio.downscale_area(x, 28), reference, atol=1e-5)
    np.testing.assert_allclose(dio.area_weights(105, 28).sum(1), 1.0)


def test_omniglot_zip_sources_and_which_is_used(tmp_path):
    folder = tmp_path / "omniglot"
    n1 = _write_omniglot_zip(folder / "images_background_small1.zip", "images_background_small1",
                             ["Greek", "Latin", "Korean"])
    n2 = _write_omniglot_zip(folder / "images_background_small2.zip", "images_background_small2",
                             ["Greek", "Latin", "Tagalog", "Sanskrit"])
    d = load_dataset("omniglot", tmp_path)
    total = n1 + n2 - 10  # Greek and Latin are in both zips: counted once
    assert len(d.train) + len(d.val) + len(d.test) == total == 25
    assert len(d.test) == round(0.25 * 25) and len(d.val) == round(0.05 * (25 - len(d.test)))
    assert "small1" in d.source and "NOT the chardata.mat benchmark" in d.source
    image = load_dataset("omniglot", tmp_path, max_train=1).train[0].reshape(28, 28)
    assert torch.allclose(image[:, :4], torch.ones(28, 4))  # stroke = 1 after inversion
    assert torch.allclose(image[:, 4], torch.zeros(28)) and image[:, 5:].max() == 0

    n_bg = _write_omniglot_zip(folder / "images_background.zip", "images_background", ["A", "B"])
    n_ev = _write_omniglot_zip(folder / "images_evaluation.zip", "images_evaluation", ["C"])
    d = load_dataset("omniglot", tmp_path)
    assert len(d.test) == n_ev and len(d.train) + len(d.val) == n_bg
    status = {s.name: s for s in data.dataset_status(tmp_path)[2]}
    assert "images_evaluation.zip" in status["omniglot"].source and status["omniglot"].present


# ----------------------------------------------------------------------------- bad files

def _idx_bytes(magic: int, dims: tuple[int, ...], n_pixels: int) -> bytes:
    header = struct.pack(f">{1 + len(dims)}I", magic, *dims)
    return gzip.compress(header + bytes(n_pixels), compresslevel=1)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (lambda good: good[: len(good) // 2], "not a valid gzip file"),
        (lambda good: b"not gzip at all", "not a valid gzip file"),
        (lambda good: _idx_bytes(0x801, (60_000, 28, 28), 60_000 * 784), "IDX magic 0x00000801"),
        (lambda good: _idx_bytes(0x803, (60_000, 28, 27), 60_000 * 756), "(60000, 28, 28)"),
        (lambda good: _idx_bytes(0x803, (100, 28, 28), 100 * 784), "(60000, 28, 28)"),
        (lambda good: _idx_bytes(0x803, (60_000, 28, 28), 1000), "header says"),
    ],
    ids=["truncated-gzip", "not-gzip", "wrong-magic", "wrong-dims", "wrong-count", "short-data"],
)
def test_corrupt_idx_is_one_line_naming_the_file(tmp_path, mnist_files, content, needle):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / MNIST_TEST).write_bytes((mnist_files / "mnist" / MNIST_TEST).read_bytes())
    good = (mnist_files / "mnist" / MNIST_TRAIN).read_bytes()
    (folder / MNIST_TRAIN).write_bytes(content(good))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DataError) as exc_info:
        load_dataset("mnist", tmp_path)
    _one_line_error(exc_info, needle, str(folder / MNIST_TRAIN), "gmmpvae data fetch mnist")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written or cached


def test_missing_files_say_where_and_how_to_get_them(tmp_path):
    for name, file in [("mnist", MNIST_TRAIN), ("fashion_mnist", MNIST_TRAIN),
                       ("frey", "frey_rawface.mat"), ("omniglot", "chardata.mat")]:
        with pytest.raises(DataError) as exc_info:
            load_dataset(name, tmp_path)
        url = data.DATASETS[name].files[0].urls[0]
        _one_line_error(exc_info, file, str(tmp_path), f"gmmpvae data fetch {name}", url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ({"faces": np.zeros((560, 1965), np.uint8)}, "has no variable 'ff'"),
        ({"ff": np.zeros((560, 100), np.uint8)}, "expected (560, 1965)"),
        ({"ff": np.zeros((560, 1965), np.float64)}, "expected uint8"),
        (None, "not a readable MATLAB file"),
    ],
    ids=["wrong-variable", "wrong-shape", "wrong-dtype", "garbage"],
)
def test_bad_mat_is_one_line_naming_the_file(tmp_path, variables, needle):
    if variables is None:
        path = tmp_path / "frey" / "frey_rawface.mat"
        path.parent.mkdir()
        path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    else:
        path = _write_frey(tmp_path, **variables)
    with pytest.raises(DataError) as exc_info:
        load_dataset("frey", tmp_path)
    _one_line_error(exc_info, needle, str(path))


def test_bad_omniglot_files_are_one_line(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    scipy.io.savemat(folder / "chardata.mat", {"data": np.zeros((784, 10)), "testdata": 0})
    with pytest.raises(DataError) as exc_info:
        load_dataset("omniglot", tmp_path)
    _one_line_error(exc_info, "chardata.mat", "'data' has shape (784, 10)")
    (folder / "chardata.mat").unlink()
    (folder / "images_background_small1.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError) as exc_info:
        load_dataset("omniglot", tmp_path)
    _one_line_error(exc_info, "images_background_small1.zip", "not a valid zip file")


# ----------------------------------------------------------------------------- fetch

class _Server:
    """Files served on 127.0.0.1; a path in ``cut`` sends half its body with the full length."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.cut, self.hits = files, set(), []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.hits.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in owner.cut else body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = _Server({})
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.gz"


def _serve_mnist(monkeypatch, server, mnist_files) -> dict[str, bytes]:
    """Point the mnist spec at the local server, with the generated files' checksums."""
    bodies = {f: (mnist_files / "mnist" / f).read_bytes() for f in (MNIST_TRAIN, MNIST_TEST)}
    server.files.update({f"/{f}": b for f, b in bodies.items()})
    spec = data.DATASETS["mnist"]
    files = tuple(
        replace(f, urls=(f"{server.url}/{f.name}",), md5=None,
                sha256=hashlib.sha256(bodies[f.name]).hexdigest())
        for f in spec.files
    )
    monkeypatch.setitem(data.DATASETS, "mnist", replace(spec, files=files))
    return bodies


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_fetch_downloads_verifies_and_is_safe_to_rerun(tmp_path, server, monkeypatch, mnist_files):
    bodies = _serve_mnist(monkeypatch, server, mnist_files)
    results = data.fetch("mnist", tmp_path, progress=False)
    assert [r.action for r in results] == ["downloaded", "downloaded"]
    assert _leftovers(tmp_path) == [f"mnist/{MNIST_TEST}", f"mnist/{MNIST_TRAIN}"]
    assert (tmp_path / "mnist" / MNIST_TRAIN).read_bytes() == bodies[MNIST_TRAIN]
    assert len(load_dataset("mnist", tmp_path, max_train=5).train) == 5
    hits = len(server.hits)
    assert [r.action for r in data.fetch("mnist", tmp_path, progress=False)] == [
        "already present", "already present"]
    assert len(server.hits) == hits  # nothing downloaded again
    (tmp_path / "mnist" / MNIST_TEST).write_bytes(b"corrupt")
    results = data.fetch("mnist", tmp_path, progress=False)
    assert [r.action for r in results] == ["already present", "replaced"]
    assert "sha256" in results[1].note
    assert (tmp_path / "mnist" / MNIST_TEST).read_bytes() == bodies[MNIST_TEST]


@pytest.mark.parametrize("failure", ["checksum", "no-network", "interrupted", "http-404"])
def test_failed_fetch_is_one_line_and_leaves_nothing(tmp_path, server, monkeypatch, mnist_files,
                                                     failure):
    _serve_mnist(monkeypatch, server, mnist_files)
    spec = data.DATASETS["mnist"]
    first = spec.files[0]
    if failure == "checksum":
        first, needle = replace(first, sha256="0" * 64), "expected 0000"
    elif failure == "no-network":
        first, needle = replace(first, urls=(_closed_port_url(),)), "refused"
    elif failure == "interrupted":
        server.cut.add(f"/{first.name}")
        needle = "connection closed"
    else:
        first, needle = replace(first, urls=(f"{server.url}/nothing.gz",)), "HTTP 404"
    monkeypatch.setitem(data.DATASETS, "mnist", replace(spec, files=(first, *spec.files[1:])))
    with pytest.raises(DataError) as exc_info:
        data.fetch("mnist", tmp_path / "data", progress=False)
    _one_line_error(exc_info, needle, first.name, first.urls[0])
    assert _leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # not even the folders it made


def test_interrupted_fetch_removes_its_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a download: the exception goes through, no file stays."""
    class Stream(io.BytesIO):
        headers: dict[str, str] = {"Content-Length": "1000000"}
        calls = 0

        def read(self, n: int = -1) -> bytes:
            Stream.calls += 1
            if Stream.calls > 2:
                raise KeyboardInterrupt
            return b"x" * 1000

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Stream())
    (tmp_path / "frey").mkdir()
    with pytest.raises(KeyboardInterrupt):
        data.fetch("frey", tmp_path, progress=False)
    assert list((tmp_path / "frey").iterdir()) == []


def test_fetch_with_mirrors_uses_the_next_one(tmp_path, server, monkeypatch, mnist_files):
    _serve_mnist(monkeypatch, server, mnist_files)
    spec = data.DATASETS["mnist"]
    files = tuple(replace(f, urls=(_closed_port_url(), *f.urls)) for f in spec.files)
    monkeypatch.setitem(data.DATASETS, "mnist", replace(spec, files=files))
    results = data.fetch("mnist", tmp_path, progress=False)
    assert [r.url for r in results] == [f.urls[1] for f in files]


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("GMMPVAE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("GMMPVAE_DATA_DIR")
    assert data.resolve_data_dir() == tmp_path / "xdg" / "gmmpvae" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.resolve_data_dir() == Path.home() / ".cache" / "gmmpvae" / "data"


def test_unknown_names_and_bad_limits_are_value_errors():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="max_train"):
        load_dataset("digits", max_train=-1)


# ----------------------------------------------------------------------------- real files

def test_real_fashion_mnist(shared_datasets):
    d = load_dataset("fashion_mnist", shared_datasets)
    assert (len(d.train), len(d.val), len(d.test)) == (50_000, 10_000, 10_000)
    # 72.94 is the mean of all 60,000 training images; the first 50,000 give 72.80
    assert abs(d.train.double().mean().item() * 255 - 72.80) < 0.01
    assert abs(d.test.mean().item() * 255 - 73.15) < 0.2  # fixed bits of the test grey levels


def test_real_frey(shared_datasets):
    d = load_dataset("frey", shared_datasets)
    assert (len(d.train), len(d.val), len(d.test)) == (1_565, 200, 200)
    assert d.image_shape == (28, 20)
    everything = torch.cat([d.train, d.val, d.test]) * 255
    assert torch.equal(everything, everything.round())
    assert abs(everything.mean().item() - 154.46) < 0.01
    data._check_frey_pixels(shared_datasets / "frey" / "frey_rawface.mat")  # the known digest


def test_real_mnist_test_images_parse_and_train_is_reported_missing(shared_datasets):
    images = dio.read_idx_images(shared_datasets / "mnist" / MNIST_TEST, 10_000, 28, 28)
    assert images.shape == (10_000, 28, 28) and images.max() == 255
    with pytest.raises(DataError) as exc_info:
        load_dataset("mnist", shared_datasets)
    _one_line_error(exc_info, MNIST_TRAIN, "gmmpvae data fetch mnist")


def test_real_omniglot_small_zips(shared_datasets):
    d = load_dataset("omniglot", shared_datasets)
    assert len(d.train) + len(d.val) + len(d.test) == 4_840  # distinct images of both zips
    assert d.image_shape == (28, 28) and d.train.shape[1] == 784
    assert d.train.max() == 1.0 and d.train.min() == 0.0
    assert d.train.median() == 0.0  # background is 0, strokes are 1
    images = d.train.reshape(-1, 28, 28)
    assert images[:, 0, :].mean() < 0.01 and images.mean() < 0.15
    assert (d.train > 0.99).float().mean() > 0.01  # solid stroke pixels exist


def test_real_files_fetch_as_already_present_without_network(shared_datasets, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    for name in ("fashion_mnist", "frey"):
        assert {r.action for r in data.fetch(name, shared_datasets, progress=False)} == {
            "already present"}
