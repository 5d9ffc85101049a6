"""The study folder as one object, opened once: its location, pyarrow filesystem and root.

`StudyFolder.open(location)` resolves a study's location (a local path or a URI) once; the
run, the repair and the readers pass the folder down instead of resolving the same location
again. Paths inside it are built with `path`, and `trial_dir` names a trial's folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from study.store.layout import TRIALS_DIR, exists, filesystem, is_uri, join


@dataclass(frozen=True)
class StudyFolder:
    """A study folder: ``location`` as the spec stores it, and its filesystem and root path."""

    location: str
    fs: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str) -> StudyFolder:
        """Resolve ``location`` (``ValueError`` of one line for a URI pyarrow cannot open)."""
        fs, root = filesystem(location)
        return cls(str(location), fs, root)

    @property
    def is_remote(self) -> bool:
        """Whether the folder is on a remote filesystem (a URI, no shared POSIX file system)."""
        return is_uri(self.location)

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` inside the folder."""
        return join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return exists(self.fs, self.path(*parts))

    def trial_dir(self, key: str) -> str:
        """The filesystem path of the trial ``key``'s folder (``STUDY/trials/<key>``)."""
        return self.path(TRIALS_DIR, key)
