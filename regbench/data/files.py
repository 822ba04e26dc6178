"""Finding a dataset's files on disk, saying what is missing, and fetching them with torchvision.

The torchvision-format loaders (cifar, mnist, svhn) read the files themselves; torchvision is used
only to download, because its dataset classes verify md5 checksums on every load, which small
test files cannot pass and which cost time on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from regbench.errors import DataNotFound


def folder(root: str | Path, *parts: str) -> Path:
    """The absolute folder ``root/parts``; relative roots are taken from the working directory."""
    return Path(root, *parts).expanduser().resolve()


def find(where: Path, name: str, gz: bool = False) -> Path | None:
    """``where/name``, else (if ``gz``) ``where/name.gz``, else None."""
    for candidate in (name, name + ".gz") if gz else (name,):
        if (where / candidate).is_file():
            return where / candidate
    return None


def missing(where: Path, names: list[str], gz: bool = False) -> list[str]:
    return [name for name in names if find(where, name, gz) is None]


def check(dataset: str, root: str | Path, subdir: str, names: list[str], expected: str,
          download: bool, gz: bool = False) -> None:
    """Raise a one-line DataNotFound unless every file is in ``root/subdir`` (or ``download`` will fetch them).

    ``expected`` describes the files for a person (``data_batch_1..5 and test_batch``).
    """
    where = folder(root, subdir)
    absent = missing(where, names, gz)
    if not absent or download:
        return
    what = "no data" if len(absent) == len(names) else "missing " + ", ".join(absent)
    place = f"to the folder that holds {subdir}" if subdir else "to the folder that holds them"
    raise DataNotFound(
        f"{dataset}: {what} in {where} (expected {expected}); put the files there, "
        f"set dataset.root (or REGBENCH_DATA) {place}, or pass dataset.download=true where there is network"
    )


def download(dataset: str, where: Path, names: list[str], fetch: Callable[[], object], gz: bool = False) -> None:
    """Call ``fetch`` (a torchvision download) if any file is missing; turn its failures into DataNotFound."""
    if not missing(where, names, gz):
        return
    try:
        fetch()
    except (OSError, RuntimeError) as e:  # no network (URLError is an OSError), or a bad checksum
        reason = " ".join(str(e).split())  # torchvision's messages span lines; the CLI prints one
        raise DataNotFound(f"{dataset}: download into {where} failed ({reason}); put the files there by hand") from e
    absent = missing(where, names, gz)
    if absent:
        raise DataNotFound(f"{dataset}: download into {where} did not produce {', '.join(absent)}")
