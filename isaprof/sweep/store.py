"""The result store: ``DIR/results.csv``, an append-only tidy table (columns = ``isaprof.config.COLUMNS``).

Writing: all rows of one configuration go out in a single ``write`` on an ``O_APPEND`` descriptor
under an exclusive ``fcntl.flock``, then ``fsync``: an interrupted sweep loses at most the
configuration being measured, never a written one, and several shard processes (local or on a
cluster's shared file system) may append to the same file at once. One shared file rather than one
file per shard keeps the store a plain CSV that pandas and ``isaprof report`` read as is, and lets a
later run with a different shard count resume it.

Reading: rows with the wrong number of fields (a line cut by a crash) are skipped. A configuration
that was retried (``--retry-failed``) has several attempts in the file; :func:`read_rows` keeps the
last attempt of each configuration. This module imports nothing of isaprof but the column list.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS = "results.csv"
# The configuration columns: two rows describe the same configuration iff these agree.
KEY_COLUMNS = (
    "block batch channels key_channels value_channels height width options impl backend path "
    "dtype device mode"
).split()

Key = tuple[str, ...]


def columns() -> list[str]:
    """The tidy-row columns, in order (``isaprof.config.COLUMNS``)."""
    from isaprof.config import COLUMNS

    return list(COLUMNS)


def results_path(out: str | Path) -> Path:
    """``out/results.csv`` for a directory, ``out`` itself for a ``.csv`` path."""
    out = Path(out)
    return out if out.suffix == ".csv" else out / RESULTS


def canonical_options(options: Any) -> str:
    """Options (JSON string, dict or (name, value) pairs) as canonical JSON: sorted keys, tuples as lists."""
    if isinstance(options, str):
        options = json.loads(options) if options.strip() else {}
    return json.dumps(_jsonable(dict(options)), sort_keys=True, separators=(",", ":"))


def config_key(cfg: Any) -> Key:
    """Store key of a configuration object with the :data:`KEY_COLUMNS` as attributes."""
    values = {c: getattr(cfg, c) for c in KEY_COLUMNS}
    return _key(values)


def row_key(row: dict[str, Any]) -> Key:
    """Store key of a result row."""
    return _key(row)


def append(out: str | Path, rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> None:
    """Append ``rows`` (one configuration's) to the store in one locked, flushed, fsync'ed write.

    Writes the header first when the file is new; ``ValueError`` if an existing file has other columns.
    """
    cols = list(cols) if cols is not None else columns()
    path = results_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    unknown = sorted({k for row in rows for k in row} - set(cols))
    if unknown:
        raise ValueError(f"rows hold column(s) {', '.join(unknown)} outside the schema {cols}")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        head = ""
        if size == 0:
            head = ",".join(cols) + "\n"
        else:
            cols = _check_header(path, cols)
            if os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a crash: end it (read skips it)
                head = "\n"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore", lineterminator="\n")
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        data = (head + buf.getvalue()).encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def read_rows(out: str | Path, *, latest: bool = True) -> list[dict[str, str]]:
    """All rows of the store (``[]`` if absent); with ``latest``, only each configuration's last attempt."""
    rows = list(_read(results_path(out)))
    if not latest:
        return rows
    last: dict[Key, list[dict[str, str]]] = {}
    for attempt in _attempts(rows):
        last[row_key(attempt[0])] = attempt
    keep = {id(r) for attempt in last.values() for r in attempt}
    return [r for r in rows if id(r) in keep]


def statuses(out: str | Path) -> dict[Key, str]:
    """``{key: "ok" | "failed"}`` of every configuration in the store (its last attempt)."""
    result: dict[Key, str] = {}
    for attempt in _attempts(list(_read(results_path(out)))):
        ok = all(r.get("status") == "ok" for r in attempt)
        result[row_key(attempt[0])] = "ok" if ok else "failed"
    return result


def _attempts(rows: list[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
    """Group rows into attempts: one configuration's rows from one ``append``.

    A new attempt starts when the key changes, when a metric repeats within the attempt, or at a
    row without metric (a whole-configuration failure, always an attempt of its own).
    """
    group: list[dict[str, str]] = []
    for row in rows:
        metric = row.get("metric", "")
        new = (
            not group
            or row_key(row) != row_key(group[0])
            or not metric
            or not group[-1].get("metric", "")
            or any(r.get("metric") == metric for r in group)
        )
        if new and group:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _read(path: Path) -> Iterator[dict[str, str]]:
    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        width = len(reader.fieldnames or [])
        for row in reader:
            if None in row or any(v is None for v in row.values()) or len(row) != width:
                continue  # cut line
            yield row


def _check_header(path: Path, cols: list[str]) -> list[str]:
    """The columns to write into the existing file: ``cols``, or the file's own header when it is an older
    schema that lacks only environment columns added since (a store stays appendable across versions)."""
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    if header == cols:
        return cols
    if set(header) <= set(cols) and set(KEY_COLUMNS) <= set(header) and "metric" in header:
        return header
    raise ValueError(
        f"{path} has columns {header}, but this isaprof writes {cols}: choose another --out directory"
    )


def _key(values: dict[str, Any]) -> Key:
    out = []
    for c in KEY_COLUMNS:
        v = values.get(c)
        if c == "options":
            out.append(canonical_options(v if v is not None else {}))
        elif c == "path":
            out.append(_cell(v) or "reference")  # rows written before paths existed are reference rows
        else:
            out.append(_cell(v))
    return tuple(out)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
