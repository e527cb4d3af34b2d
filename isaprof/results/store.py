"""The result store: ``DIR/results.csv``, an append-only tidy table (columns = ``isaprof.config.COLUMNS``).

Writing: all rows of one configuration go out in a single ``write`` on an ``O_APPEND`` descriptor
under an exclusive ``fcntl.flock``, then ``fsync``: an interrupted sweep loses at most the
configuration being measured, never a written one, and several shard processes (local or on a
cluster's shared file system) may append to the same file at once. One shared file rather than one
file per shard keeps the store a plain CSV that pandas and ``isaprof report`` read as is, and lets a
later run with a different shard count resume it.

Claiming: before measuring a configuration a run *claims* it under the same lock
(:func:`claim`): if the store already holds it, or another live run claimed it, the run moves on.
So two unsharded runs of one sweep share the work and the table never holds a configuration twice.
Claims live in ``DIR/results.claims`` (one JSON line each: key, host, pid, time) and are released
with the rows (:func:`append`); a claim of a dead process on this host is void at once, one from
another host after :data:`CLAIM_TTL_S`.

Reading: :mod:`isaprof.results.reader` (the one reader, shared with the report; torch-free).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from isaprof.results.reader import (
    KEY_COLUMNS,
    RESULTS,
    Key,
    canonical_options,
    cell_text,
    config_key,
    read_rows,
    read_table,
    results_path,
    row_key,
    statuses,
)

__all__ = [
    "CLAIM_TTL_S",
    "KEY_COLUMNS",
    "RESULTS",
    "Key",
    "append",
    "canonical_options",
    "claim",
    "columns",
    "config_key",
    "read_rows",
    "read_table",
    "release",
    "results_path",
    "row_key",
    "statuses",
]

CLAIM_TTL_S = 6 * 3600.0  # a claim from another host (whose process we cannot see) lapses after this


def columns() -> list[str]:
    """The tidy-row columns, in order (``isaprof.config.COLUMNS``)."""
    from isaprof.config import COLUMNS

    return list(COLUMNS)


def write_table(
    path: str | Path, columns: Sequence[str], rows: Sequence[dict[str, Any]], *, extra: str = "raise"
) -> Path:
    """A study's side table (``heads.csv``, ``bounds.csv``, ...): ``rows`` under the header ``columns``,
    missing cells empty, written atomically (a temporary file, then a rename) into a folder made as
    needed. ``extra``: ``"raise"`` refuses a key outside ``columns``, ``"ignore"`` drops it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", extrasaction=extra)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


@contextmanager
def locked(out: str | Path) -> Iterator[int]:
    """The store's exclusive lock (``flock`` on ``results.csv``, created empty if absent); yields its fd."""
    path = results_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        held = os.fstat(fd)
        if st is not None and (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the file was replaced (a schema upgrade) while we waited: lock the new one
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def append(
    out: str | Path,
    rows: Sequence[dict[str, Any]],
    cols: Sequence[str] | None = None,
    *,
    release_key: Key | None = None,
) -> None:
    """Append ``rows`` (one configuration's) to the store in one locked, flushed, fsync'ed write.

    Writes the header first when the file is new; ``ValueError`` if an existing file has other columns.
    ``release_key``: drop this process's claim of that configuration in the same locked step.
    """
    cols = list(cols) if cols is not None else columns()
    path = results_path(out)
    unknown = sorted({k for row in rows for k in row} - set(cols))
    if unknown:
        raise ValueError(f"rows hold column(s) {', '.join(unknown)} outside the schema {cols}")
    with locked(out) as fd:
        size = os.fstat(fd).st_size
        head = ""
        if size == 0:
            head = ",".join(cols) + "\n"
        else:
            if _check_header(path, cols) != cols:
                _upgrade(path, cols)  # an older schema: rewritten with the new columns empty, then reopened
                return append(out, rows, cols, release_key=release_key)
            if os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a crash: end it (the reader skips it)
                head = "\n"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore", lineterminator="\n")
        for row in rows:
            writer.writerow({k: cell_text(v) for k, v in row.items()})
        data = (head + buf.getvalue()).encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        if release_key is not None:
            _write_claims(out, [c for c in _claims(out) if not _mine(c, release_key)])


def claim(out: str | Path, key: Key, wanted: Callable[[dict[Key, str]], bool]) -> str:
    """Claim configuration ``key`` for this process, under the store's lock.

    ``wanted(statuses)``: whether the configuration still needs measuring given the store's statuses.
    Returns ``"claimed"`` (measure it, then :func:`append` with ``release_key``), ``"done"`` (the store
    has it: nothing to do) or ``"busy"`` (another live run claimed it).
    """
    with locked(out):
        if not wanted(read_table(out).statuses()):
            return "done"
        now = time.time()
        live = [c for c in _claims(out) if _alive(c, now)]
        if any(tuple(c["key"]) == key and not _mine(c, key) for c in live):
            _write_claims(out, live)
            return "busy"
        live.append(dict(key=list(key), host=socket.gethostname(), pid=os.getpid(), since=now))
        _write_claims(out, live)
        return "claimed"


def release(out: str | Path, key: Key) -> None:
    """Drop this process's claim of ``key`` (a configuration it will not measure after all)."""
    with locked(out):
        _write_claims(out, [c for c in _claims(out) if not _mine(c, key)])


def claims_path(out: str | Path) -> Path:
    """``DIR/results.claims`` beside the store."""
    path = results_path(out)
    return path.with_name(path.stem + ".claims")


def _claims(out: str | Path) -> list[dict[str, Any]]:
    path = claims_path(out)
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            c = json.loads(line)
            if isinstance(c, dict) and {"key", "host", "pid", "since"} <= set(c):
                found.append(c)
        except json.JSONDecodeError:
            continue  # a claim cut by a crash: void
    return found


def _write_claims(out: str | Path, claims: list[dict[str, Any]]) -> None:
    path = claims_path(out)
    if not claims:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(c) + "\n" for c in claims))
    os.replace(tmp, path)


def _mine(c: dict[str, Any], key: Key) -> bool:
    return tuple(c["key"]) == key and c["host"] == socket.gethostname() and c["pid"] == os.getpid()


def _alive(c: dict[str, Any], now: float) -> bool:
    """Whether the process holding claim ``c`` may still be measuring."""
    if c["host"] != socket.gethostname():
        return now - float(c["since"]) < CLAIM_TTL_S
    try:
        os.kill(int(c["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _upgrade(path: Path, cols: list[str]) -> None:
    """Rewrite the store at ``path`` (an older schema whose columns are a subset of ``cols``) with the
    header ``cols``, each row's new cells empty and every line kept as it was otherwise (a cut or
    malformed line is copied unchanged). Atomic: a temporary file, then a rename (the caller holds the
    lock; :func:`locked` re-opens a file replaced while it waited)."""
    lines = path.read_bytes().decode("utf-8", errors="surrogateescape").split("\n")
    header = next(csv.reader([lines[0].rstrip("\r")]), [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    writer.writeheader()
    for i, line in enumerate(lines[1:], 1):
        cells = next(csv.reader([line]), []) if line else []
        last = i == len(lines) - 1
        if len(cells) == len(header):
            writer.writerow(dict(zip(header, cells, strict=True)))
        elif line:  # malformed or cut by a crash: kept as it was, for the reader to skip
            buf.write(line + ("" if last else "\n"))
    out = [buf.getvalue()]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.upgrade")
    tmp.write_bytes("".join(out).encode("utf-8", errors="surrogateescape"))
    os.replace(tmp, path)


def _check_header(path: Path, cols: list[str]) -> list[str]:
    """The columns to write into the existing file: ``cols``, or the file's own header when it is an older
    schema that lacks only environment columns, or the layout column, added since (a store stays appendable
    across versions)."""
    with path.open(newline="", errors="replace") as f:
        header = next(csv.reader(f), [])
    if header == cols:
        return cols
    if set(header) <= set(cols) and set(KEY_COLUMNS) - {"layout"} <= set(header) and "metric" in header:
        return header  # without "layout": rows of a map input (append refuses tokens rows there)
    raise ValueError(
        f"{path}:1 has columns {header}, but this isaprof writes {cols}: choose another --out directory"
    )
