"""What makes a resume exact or refused: fsynced atomic writes, input fingerprints, a manifest diff, crash hooks.

A file counts only once its bytes and its name are on disk (fsync of the file, rename, fsync of the folder),
so a power cut can leave a part missing but never torn.  The manifest pins everything that decides the output
rows; a resume whose inputs or options differ in any of it is refused with the differences named.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Callable

from infer.io import expand

CRASH_ENV = "NEWSTAG_CRASH_AT"
FAIL_ENV = "NEWSTAG_FAIL_ID"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``, then fsync, rename over ``path`` and fsync the folder: all or nothing, and durable."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def crash_point(name: str) -> None:
    """Test hook: ``NEWSTAG_CRASH_AT=name[,name...]`` kills the process here with SIGKILL, as ``kill -9`` or a power
    cut would.

    Points: ``manifest``, ``commit-N`` (chunk N half written), ``chunk-N`` (chunk N committed), ``merge`` (output
    written, errors file not yet), ``cleanup`` (summary written, parts not yet removed).
    """
    if name in os.environ.get(CRASH_ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)


def injected_failure(ids: list[str]) -> None:
    """Test hook: ``NEWSTAG_FAIL_ID=id`` makes tagging raise whenever that article is in the batch, wherever the
    batch runs (a Spark executor included), so the bisection that isolates bad records can be seen to work."""
    target = os.environ.get(FAIL_ENV)
    if target is not None and target in ids:
        raise RuntimeError(f"injected failure for article {target}")


def fingerprint(inputs: list[str]) -> list[dict]:
    """Path, size, mtime and SHA-256 of every input file, in reading order (a file added to a folder shows)."""
    out = []
    for path in expand(inputs):
        entry: dict = {"path": str(path.resolve())}
        if not path.is_file():  # missing, or a FIFO that would block the hash
            out.append(entry | {"unreadable": "not a regular file"})
            continue
        try:
            stat = path.stat()
            with open(path, "rb") as fh:
                entry |= {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                          "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}
        except OSError as err:
            entry["unreadable"] = err.strerror or type(err).__name__
        out.append(entry)
    return out


def differences(previous: dict, current: dict) -> list[str]:
    """What changed between two manifests, one phrase per change, inputs by file."""
    out = []
    before = {f["path"]: f for f in previous.get("files") or []}
    after = {f["path"]: f for f in current.get("files") or []}
    for path, entry in after.items():
        if path not in before:
            out.append(f"input {path} was added")
        elif before[path] != entry:
            fields = sorted(k for k in entry.keys() | before[path].keys() if entry.get(k) != before[path].get(k))
            out.append(f"input {path} changed ({', '.join(fields)})")
    out += [f"input {path} was removed" for path in before if path not in after]
    if not out and list(before) != list(after):
        out.append("the inputs are read in another order")
    for key in sorted(current.keys() | previous.keys()):
        if key != "files" and previous.get(key) != current.get(key):
            out.append(f"{key} was {previous.get(key)!r}, now {current.get(key)!r}")
    return out
