"""Raw dataset files: reading IDX ``.gz``, MATLAB ``.mat`` and Omniglot image zips, and fetching.

Everything here works on one file at a time and knows nothing about splits; ``models/data.py``
says which files make which dataset. Every failure is a ``DataError``: one line naming the file
and what is wrong with it.

Checksums are verified when a file is fetched (SHA-256, and the published MD5 where there is
one); loading validates structure only — gzip integrity (its CRC-32 and length trailer cover
every byte), IDX magic, dimensions and size, ``.mat`` variables, shapes and dtypes, zip
members — because hashing the 26 MB Fashion-MNIST training file at every trial start buys
nothing that those checks miss for a file that was verified when it arrived.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.checkpoint import atomic_write

USER_AGENT = "gmmpvae-study (+https://github.com/; dataset fetch)"
CHUNK_BYTES = 1 << 16
OMNIGLOT_RAW_SIDE = 105  # the raw Omniglot PNGs are 105 x 105


class DataError(ValueError):
    """A data file is missing, corrupt or could not be fetched. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------- IDX

IDX_UBYTE = 0x08


def read_idx_images(path: Path, count: int, rows: int, cols: int) -> np.ndarray:
    """Images of an IDX ``.gz`` file as uint8 (count, rows, cols); anything else is a DataError.

    Checks, in order: the gzip stream (whole, CRC-32 and length), the magic number (0x00000803:
    unsigned bytes, 3 dimensions), the dimensions, and that the pixel bytes fill them exactly.
    """
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:
        reason = one_line(exc) or "truncated"
        raise DataError(f"{path} is not a valid gzip file ({reason})") from None
    expected_magic = (IDX_UBYTE << 8) | 3
    if len(raw) < 16:
        raise DataError(f"{path} is too short for an IDX image file ({len(raw)} bytes)")
    magic, *dims = struct.unpack(">4I", raw[:16])
    if magic != expected_magic:
        raise DataError(
            f"{path} has IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
            "(images of unsigned bytes)"
        )
    if tuple(dims) != (count, rows, cols):
        raise DataError(
            f"{path} holds images of shape {tuple(dims)}, expected ({count}, {rows}, {cols})"
        )
    n_bytes = count * rows * cols
    if len(raw) - 16 != n_bytes:
        raise DataError(
            f"{path} holds {len(raw) - 16} pixel bytes, its IDX header says {n_bytes}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def write_idx_images(path: Path, images: np.ndarray, compresslevel: int = 1) -> None:
    """Write uint8 images (N, rows, cols) as an IDX ``.gz`` file (for tests and tools)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    header = struct.pack(">4I", (IDX_UBYTE << 8) | 3, *images.shape)
    Path(path).write_bytes(gzip.compress(header + images.tobytes(), compresslevel=compresslevel))


# ----------------------------------------------------------------------------- MATLAB

def read_mat(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The named variables of a MATLAB v5 file, each checked against its expected shape."""
    from scipy.io import loadmat, whosmat

    try:
        found = {name: shape for name, shape, _ in whosmat(path)}
        missing = [name for name in shapes if name not in found]
        if missing:
            have = ", ".join(sorted(found)) or "none"
            raise DataError(
                f"{path} has no variable {', '.join(repr(m) for m in missing)} "
                f"(its variables: {have})"
            )
        arrays = loadmat(path, variable_names=list(shapes))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except Exception as exc:  # scipy raises many types (ValueError, TypeError, ...) on garbage
        raise DataError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {one_line(exc)})"
        ) from None
    out = {}
    for name, shape in shapes.items():
        value = arrays.get(name)
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise DataError(f"{path}: variable {name!r} has shape {got}, expected {shape}")
        out[name] = value
    return out


def read_chardata(path: Path) -> dict[str, np.ndarray]:
    """Burda et al.'s Omniglot ``chardata.mat``: ``data`` (784, 24345) and ``testdata``
    (784, 8070), grey levels in [0, 1], one Fortran-order image per column."""
    arrays = read_mat(path, {"data": (784, 24_345), "testdata": (784, 8_070)})
    for name, value in arrays.items():
        if not np.issubdtype(value.dtype, np.number) or value.min() < 0 or value.max() > 1:
            raise DataError(f"{path}: variable {name!r} is not grey levels in [0, 1]")
    return arrays


def read_frey_faces(path: Path) -> np.ndarray:
    """The 1,965 Frey faces of ``frey_rawface.mat`` (variable ``ff``, (560, 1965) uint8) as
    uint8 (1965, 560): each row one 28×20 face, row-major."""
    ff = read_mat(path, {"ff": (560, 1_965)})["ff"]
    if ff.dtype != np.uint8:
        raise DataError(f"{path}: variable 'ff' has dtype {ff.dtype}, expected uint8")
    return np.ascontiguousarray(ff.T)


def check_frey_pixels(path: Path, sha256: str) -> None:
    """Raise DataError unless the faces' bytes (face after face) have this sha256."""
    digest = hashlib.sha256(read_frey_faces(path).tobytes()).hexdigest()
    if digest != sha256:
        raise DataError(f"{path}: the faces have sha256 {digest}, expected {sha256}")


# ----------------------------------------------------------------------------- Omniglot zips

def area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of exact area averaging: row i averages the source interval
    [i·src/dst, (i+1)·src/dst), with fractional weights for the pixels cut by its ends (as
    OpenCV's INTER_AREA; PIL's BOX filter and torch's adaptive_avg_pool2d take whole pixels,
    which for 105 → 28 gives windows of 3 to 5 pixels instead of 3.75)."""
    scale = src / dst
    edges = np.arange(dst + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]  # (dst, 1)
    pix = np.arange(src)[None, :]  # (1, src)
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return overlap / scale


def downscale_area(images: np.ndarray, side: int) -> np.ndarray:
    """Area-average square images (N, S, S) to (N, side, side), float32."""
    w = area_weights(images.shape[-1], side).astype(np.float32)  # (side, S)
    out = np.matmul(np.matmul(w, images.astype(np.float32)), w.T)  # (N, side, side)
    return np.clip(out, 0.0, 1.0, out=out) if images.dtype.kind == "f" else out


def read_omniglot_zip(path: Path, side: int = 28) -> dict[str, np.ndarray]:
    """Ink images of a raw Omniglot zip, keyed ``alphabet/characterNN/file.png``.

    Each 105×105 PNG is read as grey levels in [0, 1] (PIL ``convert("L")``), inverted so that
    strokes are 1 and background 0, then area-averaged to side × side (float32).
    The key drops the zip's top folder, so the same image in two zips has the same key.
    """
    from PIL import Image, UnidentifiedImageError

    out: dict[str, np.ndarray] = {}
    chunk_keys: list[str] = []
    chunk: list[np.ndarray] = []

    def flush() -> None:
        if chunk:
            small = downscale_area(np.stack(chunk), side)  # (n, side, side)
            out.update(zip(chunk_keys, small, strict=True))
            chunk_keys.clear()
            chunk.clear()

    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
            if not members:
                raise DataError(f"{path} holds no PNG images")
            for member in members:
                try:
                    with Image.open(io.BytesIO(archive.read(member))) as image:
                        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
                except (OSError, UnidentifiedImageError, zipfile.BadZipFile, zlib.error) as exc:
                    raise DataError(
                        f"{path}: member {member} is unreadable ({one_line(exc)})"
                    ) from None
                if grey.shape != (OMNIGLOT_RAW_SIDE, OMNIGLOT_RAW_SIDE):
                    raise DataError(
                        f"{path}: member {member} is {grey.shape[1]}x{grey.shape[0]}, "
                        f"expected {OMNIGLOT_RAW_SIDE}x{OMNIGLOT_RAW_SIDE}"
                    )
                chunk_keys.append(member.split("/", 1)[-1])
                chunk.append(1.0 - grey)
                if len(chunk) == 1024:
                    flush()
            flush()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a valid zip file ({one_line(exc)})") from None
    return out


# ----------------------------------------------------------------------------- fetching

def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def verify_file(
    path: Path,
    sha256: str | None = None,
    md5: str | None = None,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Raise DataError unless ``path`` has the given digests and passes ``check``."""
    if sha256 or md5:
        got_sha, got_md5 = file_digests(path)
        if sha256 and got_sha != sha256:
            raise DataError(f"{path} has sha256 {got_sha}, expected {sha256}")
        if md5 and got_md5 != md5:
            raise DataError(f"{path} has md5 {got_md5}, expected {md5}")
    if check is not None:
        check(path)


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return one_line(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed early, {exc.expected} bytes missing"
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _stream(url: str, out: io.BufferedWriter, label: str, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
            disable=None if progress else True, leave=False,  # None: only on a terminal
        ) as bar:
            while block := response.read(CHUNK_BYTES):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise http.client.IncompleteRead(b"", total - received)


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    check: Callable[[Path], None] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> str:
    """Download ``dest`` from the first of ``urls`` that gives a valid file; return that URL.

    Atomic: the bytes go to a temporary file in ``dest``'s folder, are verified (digests, then
    ``check``) and only then renamed onto ``dest``; on any failure or interruption the temporary
    file is removed and ``dest`` is left as it was. All URLs failing is one DataError line.
    """
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    failures: list[str] = []
    chosen: list[str] = []

    def fetch_into(tmp: Path) -> None:
        """Try each URL into ``tmp``; raise when none gives a valid file."""
        with open(tmp, "wb") as out:
            for url in urls:
                out.seek(0)
                out.truncate()
                try:
                    _stream(url, out, dest.name, progress, timeout)
                    out.flush()
                    verify_file(tmp, sha256, md5, check)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    reason = str(exc) if isinstance(exc, DataError) else _network_reason(exc)
                    failures.append(f"{url} ({reason.replace(str(tmp), 'download')})")
                    continue
                chosen.append(url)
                return
        raise DataError(f"could not fetch {dest.name} into {dest.parent}: " + "; ".join(failures))

    try:
        atomic_write(dest, fetch_into)  # the code base's one atomic-write helper
    except OSError as exc:
        _remove_empty(created)
        raise DataError(f"cannot write {dest} ({one_line(exc)})") from None
    except BaseException:
        _remove_empty(created)  # leave no empty folders behind either
        raise
    return chosen[0]


def _remove_empty(folders: Sequence[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break
