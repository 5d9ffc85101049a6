"""The Optuna journal file (``STUDY/optuna.journal``): checked and, where a crash tore it,
repaired before anything opens it.

Optuna's `JournalFileBackend` appends one JSON object per line (``"\\n"``-terminated, under a
lock, fsynced). A driver killed mid-append can leave a *torn last line*: a line without its
newline, or one that is not valid JSON. Optuna (5.0) tolerates that line while reading — it
skips a broken line when nothing follows it — but the next append lands behind the torn bytes
and turns them into a broken line *in the middle*, which makes every later read fail. So a torn
last line is cut off before the journal is opened for writing (the cut bytes are kept beside it
in ``optuna.journal.torn-<UTC time>``), and the trial it described is reconciled from the
study's own trial records by the caller. A broken line that is *not* the last one is damage no
crash makes: it is named (file, line, what is wrong) and nothing is changed.
"""

from __future__ import annotations

import json
import os

from study.store.layout import utc_stamp


class JournalDamagedError(ValueError):
    """The journal has a broken line other than its last; the message names file and line."""


def _check_line(path: str, number: int, line: bytes) -> str | None:
    """Why ``line`` is not a journal entry, or None."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}, column {exc.colno})"
    if not isinstance(entry, dict) or "op_code" not in entry:
        return "valid JSON but not an Optuna journal entry (no op_code)"
    return None


def journal_problem(path: str) -> str | None:
    """Read-only (``status``, ``report``): one line naming a torn or damaged journal, or None."""
    try:
        torn = _scan(path)
    except JournalDamagedError as exc:
        return str(exc)
    if torn is None:
        return None
    return (f"the Optuna journal {path} ends in a line torn by a crash ({torn[2]}); "
            "`gmmpvae resume` cuts it off and reconciles the trial it described")


def _scan(path: str) -> tuple[bytes, int, str] | None:
    """(content, offset of the torn last line, what is wrong) or None when whole or absent;
    `JournalDamagedError` for a broken line before the last."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if not data:
        return None
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline (b"" if whole)
    offset = 0
    for number, line in enumerate(complete, start=1):
        problem = _check_line(path, number, line)
        if problem is not None:
            if number < len(complete) or tail:
                raise JournalDamagedError(
                    f"Optuna journal {path} is damaged at line {number} of {len(lines)}: "
                    f"{problem}; a crash only tears the last line, so this file was changed "
                    "by something else — restore it from a backup")
            return data, offset, f"its last line ({problem})"
        offset += len(line) + 1
    if tail:
        return data, offset, f"its last line (no newline: {len(tail)} bytes cut mid-write)"
    return None


def repair_journal(path: str) -> str | None:
    """Check the journal at ``path``; cut a torn last line off. Returns one line saying what was
    repaired (None when the file was whole or does not exist). Raises `JournalDamagedError`
    for a broken line before the last."""
    torn = _scan(path)
    return None if torn is None else _cut(path, *torn)


def _cut(path: str, data: bytes, offset: int, what: str) -> str:
    stamp = utc_stamp()
    kept = f"{path}.torn-{stamp}"
    with open(kept, "wb") as f:
        f.write(data[offset:])
        f.flush()
        os.fsync(f.fileno())
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
    return (f"repaired the Optuna journal {path}: cut off {what}, left by a crash mid-write; "
            f"the cut bytes are in {os.path.basename(kept)}")
