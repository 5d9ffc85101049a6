"""The datasets of the study (docs/DATASETS.md): where their files are, how they split, and
how training batches are drawn.

A ``Dataset`` holds three (N, P) float32 tensors on the training device, in [0, 1]:
- binary sets (mnist, fashion_mnist, omniglot, digits; Bernoulli likelihood): ``train`` keeps
  its grey levels and is binarised afresh for every batch (dynamic binarization, on the device,
  with the caller's ``torch.Generator``); ``val`` and ``test`` are binarised once, on the CPU,
  with the fixed seed ``BINARIZE_SEED`` that does not depend on the trial seed, so every trial
  of every study is scored on the same bits (VampPrior uses seed 777 the same way);
- frey (discretized logistic likelihood): grey levels k/255, never binarised.

Splits are fixed: mnist and fashion_mnist take the first 50,000 of the 60,000 training images
for training and the last 10,000 for validation; omniglot, frey and digits shuffle with the
fixed ``SPLIT_SEED`` (numpy's ``default_rng``). ``max_train`` / ``max_test`` (> 0) keep the
first N of a split *after* that fixed split (and, for val/test, after binarization), so a
small study sees a prefix of the same images and bits: ``max_train`` bounds ``train``,
``max_test`` bounds ``val`` and ``test`` (the held-out sets, evaluated every epoch / at the end).

Files live under a data folder: ``data_dir`` (the ``--data-dir`` flag), else
``$GMMPVAE_DATA_DIR``, else ``$XDG_CACHE_HOME/gmmpvae/data`` (``~/.cache/gmmpvae/data``).
Layout: ``<dir>/mnist/*.gz``, ``<dir>/fashion_mnist/*.gz`` (or ``fashion-mnist/``),
``<dir>/omniglot/chardata.mat`` (or raw image zips), ``<dir>/frey/frey_rawface.mat``.
Only the image files are needed (labels are not used). Nothing converted is cached: the largest
load (the full raw Omniglot zips, about 32,000 PNGs) takes a few seconds.

Omniglot sources, first found wins (``gmmpvae data list`` says which one is used):
1. ``chardata.mat`` — Burda et al.'s 28×28 benchmark: ``data`` (784, 24345) is split
   23,000 / 1,345 with the fixed seed, ``testdata`` (784, 8070) is the test set. MATLAB stores
   each 784-column in Fortran (column-major) order, so an upright image is
   ``data.T.reshape(-1, 28, 28, order="F")``. This is what IWAE's and VampPrior's loaders do
   with ``x.reshape(-1, 28, 28).reshape(-1, 784, order="F")``: element k of their row is
   x[28·(k mod 28) + k div 28], i.e. entry (r, c) of the upright image is column element r + 28c.
2. ``images_background.zip`` + ``images_evaluation.zip`` (raw 105×105 PNGs of Lake et al.):
   background → train/val (``OMNIGLOT_ZIP_VAL_FRACTION`` to val, fixed seed), evaluation → test.
3. Background zips only (``images_background.zip``, else ``images_background_small1/2.zip``,
   duplicates between the small zips dropped): one fixed-seed split, ``OMNIGLOT_ZIP_TEST_FRACTION``
   to test and ``OMNIGLOT_ZIP_VAL_FRACTION`` of the rest to val.
Raw PNGs become grey levels (PIL ``convert("L")`` / 255), are inverted (strokes 1, background 0)
and area-averaged to 28×28 (105 = 28 · 3.75: exact area weights, ``datasets_io.area_weights``).
Sources 2 and 3 are not the benchmark's split: numbers from them do not compare with the paper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from models import datasets_io as dio
from models.config import DATASET_MODEL_FIELDS
from models.datasets_io import DataError

__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetStatus", "FetchResult",
    "dataset_status", "fetch", "load_dataset", "resolve_data_dir",
]

SPLIT_SEED = 2020
BINARIZE_SEED = 777
OMNIGLOT_ZIP_VAL_FRACTION = 0.05
OMNIGLOT_ZIP_TEST_FRACTION = 0.25
# sha256 of np.ascontiguousarray(ff.T).tobytes() (../shared/datasets/README.md): identifies the
# faces whatever the .mat container's header says.
FREY_PIXEL_SHA256 = "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78"

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_URLS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
CHARDATA_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
OMNIGLOT_RAW_HOME = "https://github.com/brendenlake/omniglot (python/images_*.zip)"
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset and how to get and verify it (on fetch)."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    check: Callable[[Path], None] | None = None  # structure / content check
    checked: str = ""  # what `check` verifies, when no file checksum is known


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folders: tuple[str, ...]  # candidate sub-folders of the data folder, first is canonical
    files: tuple[DataFile, ...]  # what `fetch` downloads
    binary: bool

    @property
    def image_shape(self) -> tuple[int, int]:
        height, width = DATASET_MODEL_FIELDS[self.name]["image_shape"]
        return height, width

    @property
    def likelihood(self) -> str:
        return DATASET_MODEL_FIELDS[self.name]["likelihood"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test images, (N, P) float32 on one device (see the module doc)."""

    name: str
    train: torch.Tensor  # (N_train, P) grey levels
    val: torch.Tensor  # (N_val, P) fixed bits for binary sets
    test: torch.Tensor  # (N_test, P) fixed bits for binary sets
    image_shape: tuple[int, int]
    likelihood: str  # "bernoulli" | "logistic" (ModelConfig.likelihood)
    binary: bool
    source: str = ""  # which files it came from

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(getattr(self, k).shape)}" for k in ("train", "val", "test"))
        return (f"Dataset({self.name!r}, {shapes}, image_shape={self.image_shape}, "
                f"likelihood={self.likelihood!r}, device={self.device}, source={self.source!r})")

    @property
    def n_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def device(self) -> torch.device:
        return self.train.device

    def to(self, device: str | torch.device) -> Dataset:
        """The same dataset on ``device`` (through pinned memory to a GPU: `to_device`)."""
        return replace(self, train=to_device(self.train, device),
                       val=to_device(self.val, device), test=to_device(self.test, device))

    def train_batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[torch.Tensor]:
        """One epoch of shuffled training batches (B, P); the last one may be smaller.

        Binary sets are binarised afresh, x ~ Bernoulli(grey level), so every epoch sees new
        bits. ``generator`` must live on the data's device; it drives shuffle and bits.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an integer >= 1")
        n = self.train.shape[0]
        order = torch.randperm(n, generator=generator, device=self.train.device)
        for start in range(0, n, batch_size):
            batch = self.train[order[start : start + batch_size]]  # (B, P)
            if self.binary:
                batch = torch.bernoulli(batch, generator=generator)
            yield batch


def to_device(tensor: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``tensor`` on ``device``. A CPU tensor bound for a GPU is staged in pinned (page-locked)
    memory and copied asynchronously — the fast path of a host-to-device copy; PyTorch's
    pinned-memory allocator keeps the staging buffer until the copy has finished."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# ----------------------------------------------------------------------------- where files are

def _data_dir_and_origin(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    if data_dir:
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("GMMPVAE_DATA_DIR")
    if env:
        return Path(env).expanduser(), "$GMMPVAE_DATA_DIR"
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return cache / "gmmpvae" / "data", "per-user cache"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$GMMPVAE_DATA_DIR``, else the per-user cache."""
    return _data_dir_and_origin(data_dir)[0]


def _folder(spec: DatasetSpec, root: Path) -> Path:
    """The first candidate sub-folder that exists, else the canonical one."""
    for name in spec.folders:
        if (root / name).is_dir():
            return root / name
    return root / spec.folders[0]


def _looked_in(spec: DatasetSpec, root: Path) -> str:
    folder = _folder(spec, root)
    if folder.is_dir() or len(spec.folders) == 1:
        return str(folder)
    return " or ".join(str(root / name) for name in spec.folders)


def _missing_error(spec: DatasetSpec, root: Path, file: DataFile, also: str = "") -> DataError:
    return DataError(
        f"{spec.name}: {file.name} not found in {_looked_in(spec, root)}{also}; "
        f"run `gmmpvae data fetch {spec.name}` (downloads {file.urls[0]}) or copy it there"
    )


def _read(spec: DatasetSpec, reader: Callable[[], np.ndarray | dict]) -> np.ndarray | dict:
    """Run a reader; its DataError gets the way out appended."""
    try:
        return reader()
    except DataError as exc:
        raise DataError(
            f"{spec.name}: {exc}; run `gmmpvae data fetch {spec.name}` to replace it "
            "with a verified copy"
        ) from None


# ----------------------------------------------------------------------------- loaders

def _split(n: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Index arrays of a fixed-seed random split of range(n) into consecutive ``sizes``."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    bounds = np.cumsum((0, *sizes))
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


Splits = tuple[np.ndarray, np.ndarray, np.ndarray, str]  # train, val, test (N, P) float32; source


def _load_idx(spec: DatasetSpec, root: Path) -> Splits:
    folder = _folder(spec, root)
    train_file, test_file = spec.files
    for file in spec.files:
        if not (folder / file.name).is_file():
            raise _missing_error(spec, root, file)
    train = _read(spec, lambda: dio.read_idx_images(folder / train_file.name, 60_000, 28, 28))
    test = _read(spec, lambda: dio.read_idx_images(folder / test_file.name, 10_000, 28, 28))
    train = train.reshape(60_000, -1).astype(np.float32) / 255.0
    test = test.reshape(10_000, -1).astype(np.float32) / 255.0
    source = f"{folder}/{{{train_file.name}, {test_file.name}}}"
    return train[:50_000], train[50_000:], test, source


def _omniglot_source(folder: Path) -> tuple[str, list[Path]] | None:
    """("mat" | "zips" | "background", files) of the first Omniglot source present."""
    if (folder / "chardata.mat").is_file():
        return "mat", [folder / "chardata.mat"]
    background, evaluation = folder / "images_background.zip", folder / "images_evaluation.zip"
    if background.is_file():
        return ("zips", [background, evaluation]) if evaluation.is_file() else (
            "background", [background]
        )
    smalls = [folder / f"images_background_small{i}.zip" for i in (1, 2)]
    smalls = [p for p in smalls if p.is_file()]
    return ("background", smalls) if smalls else None


def _omniglot_description(kind: str, paths: list[Path]) -> str:
    names = " + ".join(p.name for p in paths)
    if kind == "mat":
        return f"{names} (Burda et al. 28x28 benchmark; split 23,000 / 1,345 / 8,070)"
    how = ("train/val from background, test from evaluation" if kind == "zips"
           else "one fixed-seed train/val/test split")
    return (f"{names} (raw 105x105 images area-averaged to 28x28; {how}; "
            "NOT the chardata.mat benchmark)")


def _zip_images(spec: DatasetSpec, paths: list[Path]) -> np.ndarray:
    images: dict[str, np.ndarray] = {}
    for path in paths:  # the small zips overlap (Greek, Latin): same key, same image
        images.update(_read(spec, lambda path=path: dio.read_omniglot_zip(path)))
    return np.stack([images[k] for k in sorted(images)]).reshape(len(images), -1)


def _load_omniglot(spec: DatasetSpec, root: Path) -> Splits:
    folder = _folder(spec, root)
    found = _omniglot_source(folder)
    if found is None:
        raise _missing_error(
            spec, root, spec.files[0],
            also=" (nor raw image zips images_background.zip + images_evaluation.zip "
            f"or images_background_small1/2.zip from {OMNIGLOT_RAW_HOME})",
        )
    kind, paths = found
    source = _omniglot_description(kind, paths)
    if kind == "mat":
        arrays = _read(spec, lambda: dio.read_chardata(paths[0]))

        def upright(columns: np.ndarray) -> np.ndarray:  # (784, N) Fortran-order columns
            images = columns.T.reshape(-1, 28, 28, order="F")  # (N, 28, 28)
            return images.reshape(len(images), -1).astype(np.float32)

        pool, test = upright(arrays["data"]), upright(arrays["testdata"])
        train_idx, val_idx = _split(len(pool), (23_000, 1_345))
        return pool[train_idx], pool[val_idx], test, source
    pool = _zip_images(spec, paths[:1] if kind == "zips" else paths)
    if kind == "zips":
        test = _zip_images(spec, paths[1:])
    else:
        n_test = round(OMNIGLOT_ZIP_TEST_FRACTION * len(pool))
        rest_idx, test_idx = _split(len(pool), (len(pool) - n_test, n_test))
        pool, test = pool[rest_idx], pool[test_idx]
    n_val = round(OMNIGLOT_ZIP_VAL_FRACTION * len(pool))
    train_idx, val_idx = _split(len(pool), (len(pool) - n_val, n_val))
    return pool[train_idx], pool[val_idx], test, source


def _load_frey(spec: DatasetSpec, root: Path) -> Splits:
    path = _folder(spec, root) / spec.files[0].name
    if not path.is_file():
        raise _missing_error(spec, root, spec.files[0])
    faces = _read(spec, lambda: dio.read_frey_faces(path)).astype(np.float32) / 255.0  # k/255
    train_idx, val_idx, test_idx = _split(len(faces), (1_565, 200, 200))
    return faces[train_idx], faces[val_idx], faces[test_idx], str(path)


def _load_digits(spec: DatasetSpec, root: Path) -> Splits:
    from sklearn.datasets import load_digits

    images = load_digits().data.astype(np.float32) / 16.0  # (1797, 64), values 0..16
    train_idx, val_idx, test_idx = _split(len(images), (1_297, 250, 250))
    return images[train_idx], images[val_idx], images[test_idx], "scikit-learn load_digits()"


# ----------------------------------------------------------------------------- the datasets

def _check_frey_pixels(path: Path) -> None:
    dio.check_frey_pixels(path, FREY_PIXEL_SHA256)


def _idx_file(name: str, bases: tuple[str, ...], count: int, sha256: str, md5: str) -> DataFile:
    def check(path: Path) -> None:
        dio.read_idx_images(path, count, 28, 28)

    return DataFile(name, tuple(b + name for b in bases), sha256, md5, check)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", ("mnist",), (
        _idx_file("train-images-idx3-ubyte.gz", MNIST_URLS, 60_000,
                  "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                  "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _idx_file("t10k-images-idx3-ubyte.gz", MNIST_URLS, 10_000,
                  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                  "9fb629c4189551a2d022fa330f9573f3"),
    ), True),
    "fashion_mnist": DatasetSpec("fashion_mnist", ("fashion_mnist", "fashion-mnist"), (
        _idx_file("train-images-idx3-ubyte.gz", FASHION_URLS, 60_000,
                  "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                  "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        _idx_file("t10k-images-idx3-ubyte.gz", FASHION_URLS, 10_000,
                  "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                  "bef4ecab320f06d8554ea6380940ec79"),
    ), True),
    # No published checksum of chardata.mat is known: fetch checks its variables and shapes.
    "omniglot": DatasetSpec("omniglot", ("omniglot",), (
        DataFile("chardata.mat", (CHARDATA_URL,), check=dio.read_chardata,
                 checked="variables and shapes checked; no published checksum"),
    ), True),
    # The canonical file's own checksum is not known here (and copies differ in their MAT
    # header): fetch checks the pixels' digest instead, which any faithful copy passes.
    "frey": DatasetSpec("frey", ("frey",), (
        DataFile("frey_rawface.mat", (FREY_URL,), check=_check_frey_pixels,
                 checked="sha256 of the pixels verified"),
    ), False),
    "digits": DatasetSpec("digits", (), (), True),
}

_LOADERS: dict[str, Callable[[DatasetSpec, Path], Splits]] = {
    "mnist": _load_idx, "fashion_mnist": _load_idx, "omniglot": _load_omniglot,
    "frey": _load_frey, "digits": _load_digits,
}


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    max_train: int = 0,
    max_test: int = 0,
) -> Dataset:
    """Load a dataset with its fixed split onto ``device`` (see the module doc).

    ``max_train`` / ``max_test`` > 0 keep the first N training / held-out (val and test) images
    of the fixed split; 0 keeps all. Missing or corrupt files raise a one-line DataError.
    """
    spec = _spec(name)
    for arg, value in (("max_train", max_train), ("max_test", max_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{arg}={value!r} is invalid: expected an integer >= 0")
    train, val, test, source = _LOADERS[name](spec, resolve_data_dir(data_dir))
    tensors = [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (train, val, test)]
    if spec.binary:  # the same bits for every trial, whatever its seed and device
        gen = torch.Generator().manual_seed(BINARIZE_SEED)
        tensors[1:] = [torch.bernoulli(t, generator=gen) for t in tensors[1:]]
    limits = (max_train, max_test, max_test)
    # clone: a prefix must not keep the whole split's memory alive
    tensors = [t[:limit].clone() if limit else t for t, limit in zip(tensors, limits, strict=True)]
    train_t, val_t, test_t = (to_device(t, device) for t in tensors)
    return Dataset(name, train_t, val_t, test_t, spec.image_shape, spec.likelihood, spec.binary,
                   source)


# ----------------------------------------------------------------------------- list and fetch

@dataclass(frozen=True)
class DatasetStatus:
    """What ``gmmpvae data list`` shows for one dataset."""

    name: str
    location: str  # where its files are looked for
    present: bool  # every file needed is there (validated only when loaded or fetched)
    source: str  # what load_dataset would read, or how to get it
    missing: tuple[str, ...] = field(default=())


def dataset_status(
    data_dir: str | os.PathLike | None = None,
) -> tuple[Path, str, list[DatasetStatus]]:
    """(data folder, where that folder came from, one status per dataset)."""
    root, origin = _data_dir_and_origin(data_dir)
    out = []
    for spec in DATASETS.values():
        if not spec.folders:
            out.append(DatasetStatus(spec.name, "bundled with scikit-learn", True,
                                     "scikit-learn load_digits() (1,797 images, 8x8)"))
            continue
        location, folder = _looked_in(spec, root), _folder(spec, root)
        if spec.name == "omniglot" and (found := _omniglot_source(folder)):
            out.append(DatasetStatus(spec.name, location, True, _omniglot_description(*found)))
            continue
        missing = tuple(f.name for f in spec.files if not (folder / f.name).is_file())
        how = f"get with `gmmpvae data fetch {spec.name}` ({spec.files[0].urls[0]})"
        if spec.name == "omniglot":
            how += " or put the raw images_background/evaluation zips there"
        source = how if missing else ", ".join(f.name for f in spec.files)
        out.append(DatasetStatus(spec.name, location, not missing, source, missing))
    return root, origin, out


@dataclass(frozen=True)
class FetchResult:
    path: Path
    action: str  # "already present" | "downloaded" | "replaced"
    verified: str  # how the file was checked
    url: str | None = None
    note: str = ""  # why a file that was there got replaced


def fetch(
    name: str, data_dir: str | os.PathLike | None = None, *, progress: bool = True
) -> list[FetchResult]:
    """Download a dataset's files into the data folder, verified; re-running is safe.

    A file already there is verified (checksums, structure) and kept when valid; an invalid
    one is replaced by a verified download. Writes are atomic (``datasets_io.download``).
    """
    spec = _spec(name)
    if not spec.files:
        return []
    folder = _folder(spec, resolve_data_dir(data_dir))
    results = []
    for file in spec.files:
        path = folder / file.name
        sums = " and ".join(k for k in ("sha256", "md5") if getattr(file, k))
        verified = f"{sums} verified" if sums else file.checked
        note = ""
        if path.is_file():
            try:
                dio.verify_file(path, file.sha256, file.md5, file.check)
                results.append(FetchResult(path, "already present", verified))
                continue
            except DataError as exc:
                note = str(exc)
        url = dio.download(file.urls, path, sha256=file.sha256, md5=file.md5, check=file.check,
                           progress=progress)
        results.append(FetchResult(path, "replaced" if note else "downloaded", verified, url,
                                   note))
    return results
