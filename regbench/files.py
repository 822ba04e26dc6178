"""Files every layer writes the same way: atomically (a reader sees the old file or the new one, never
half of one), and the code version a result was made with."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

from regbench.errors import UserError


def write_atomic(path: Path, content: str | Callable[[Path], None], durable: bool = False) -> None:
    """Write ``content`` (text, or a function writing to the path it is given) to a temporary file beside
    ``path``, then rename it over ``path``. ``durable``: fsync the file and the rename (checkpoints)."""
    write_all([(path, content)], durable)


def write_all(items: list[tuple[Path, str | Callable[[Path], None]]], durable: bool = False) -> None:
    """:func:`write_atomic` for several files at once: every file is written (and fsynced) to its temporary
    first, then all are renamed in order, so a kill while writing leaves every old file in place and only the
    renames (microseconds) stand between the old set and the new one. The members of a stack checkpoint
    this way, so that after a kill they resume at one epoch."""
    pending: list[tuple[Path, Path]] = []
    path = Path(items[0][0]) if items else Path(".")
    try:
        for path, content in items:
            path = Path(path)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: writers never share one
            pending.append((tmp, path))
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                tmp.write_text(content)
            else:
                content(tmp)
            if durable:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
        for tmp, path in pending:
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)  # the previous files, if any, are untouched
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and _disk_full(path.parent)):  # torch.save: RuntimeError
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "no space left on device"
            raise UserError(f"cannot write {path}: {reason}; the previous file, if any, is intact") from None
        raise
    if durable:
        for folder in dict.fromkeys(path.parent for _, path in pending):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the renames themselves durable
            finally:
                os.close(dir_fd)


def _disk_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 1 << 20  # under 1 MiB left


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path, row: dict) -> None:
    """One more row (a kill mid-write leaves at most a cut-off last line, which readers skip)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def read_json(path: Path) -> dict | None:
    """A JSON object regbench wrote (result.json): None if absent, DamagedFile if cut off, empty or not an object."""
    from regbench.errors import DamagedFile

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DamagedFile(path, f"cannot be read ({e.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise DamagedFile(path, "is empty" if not text.strip() else "is cut off or not JSON") from None
    if not isinstance(data, dict):
        raise DamagedFile(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (metrics.jsonl) that are objects; any other line is skipped with a warning
    naming the file and line (a kill can cut the last line short)."""
    import logging

    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return rows
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif line.strip() and (str(path), number, line) not in _WARNED:  # once per process: a report reads a file often
            _WARNED.add((str(path), number, line))
            logging.getLogger("regbench").warning("%s:%d is not a metrics row; skipped", path, number)
    return rows


_WARNED: set[tuple[str, int, str]] = set()


@cache
def git_commit() -> str | None:
    """The commit regbench runs from, marked when the checkout has uncommitted changes; None outside git."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
