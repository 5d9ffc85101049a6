"""Where a study folder the report reads lives: a local path or a filesystem URI.

A study on an object store (``s3://bucket/studies/x``; any URI pyarrow opens, its endpoint and
keys from the environment as for every S3 tool: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``) is read through pyarrow's filesystem; a local one through the local
file system, lazily. One meaning of "URI", the one of `study.store.layout.is_uri` (a test checks
they agree: analysis reads data and never imports study): ``scheme://…`` other than
``file://``. A store that cannot be reached (refused, wrong keys, no such bucket) is an
``OSError`` of one line, raised by the first look (`Location.kind`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

FILE_SCHEME = "file://"


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for a remote filesystem URI (``scheme://…`` other than ``file://``)."""
    text = str(location)
    return "://" in text and not text.startswith(FILE_SCHEME)


@dataclass(frozen=True)
class Location:
    """A folder or file: ``text`` as shown to the user; ``fs``/``path`` for a URI (None/the
    absolute path locally)."""

    text: str
    path: str
    fs: Any = None  # pyarrow.fs.FileSystem of a URI; None: local

    @classmethod
    def of(cls, where: str | os.PathLike[str]) -> Location:
        text = str(where)
        if not is_uri(text):
            if text.startswith(FILE_SCHEME):
                text = text[len(FILE_SCHEME):]
            return cls(text, str(Path(text).expanduser().resolve()))
        import pyarrow.fs as pafs

        text = text.rstrip("/")
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except Exception as exc:  # pyarrow raises several kinds for an unusable URI
            raise OSError(f"{text} cannot be opened: {_first_line(exc)}") from None
        return cls(text, path, fs)

    @property
    def remote(self) -> bool:
        return self.fs is not None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def absolute(self) -> str:
        """The location as the study_dir column shows it: an absolute path, or the URI."""
        return self.text if self.remote else self.path

    def child(self, *parts: str) -> Location:
        sep = "/"
        return Location(sep.join([self.text.rstrip(sep), *parts]),
                        sep.join([self.path.rstrip(sep), *parts]), self.fs)

    def __str__(self) -> str:
        return self.text

    def kind(self) -> str:
        """'file', 'dir' or 'missing'."""
        if not self.remote:
            p = Path(self.path)
            return "file" if p.is_file() else "dir" if p.is_dir() else "missing"
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.path)
        except OSError as exc:
            raise OSError(f"{self.text} cannot be read: {_first_line(exc)}") from None
        return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type,
                                                                              "missing")

    def is_file(self) -> bool:
        return self.kind() == "file"

    def has_files(self, suffix: str) -> bool:
        """Whether a file ending in ``suffix`` is anywhere below this folder."""
        if not self.remote:
            return any(Path(self.path).rglob(f"*{suffix}"))
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        return any(i.path.endswith(suffix) for i in self.fs.get_file_info(selector))

    def read_bytes(self) -> bytes:
        """The file's bytes, locally or through the URI's filesystem."""
        if not self.remote:
            return Path(self.path).read_bytes()
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        """The file's text (UTF-8), locally or through the URI's filesystem."""
        return self.read_bytes().decode("utf-8")

    def scan_parquet(self) -> pl.LazyFrame:
        """The Parquet file, lazily (locally) or read once through pyarrow (a URI)."""
        if not self.remote:
            return pl.scan_parquet(self.path)
        import pyarrow.parquet as pq

        table = pq.read_table(self.path, filesystem=self.fs)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else type(exc).__name__
