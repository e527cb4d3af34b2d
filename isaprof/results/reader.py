"""The one reader of the result table ``DIR/results.csv`` (sweep, reproduce and report all use it).

Imports no torch (the report stays torch-free). The file is an append-only tidy table: one
configuration's rows go out in one locked write (:mod:`isaprof.results.store`), and a configuration
measured again (``--retry-failed``) has several *attempts* in it.

What the reader guarantees:

- the **last attempt** of a configuration wins (a retried ``oom`` that then measured is ``ok``);
- a **malformed row** (cut by a crash, wrong field count, bad number, bad status, undecodable
  bytes) is skipped with a :class:`ResultsWarning` naming the file and line; the attempt it belonged
  to (found from the row's configuration columns when they are still readable) is *incomplete*: it
  does not count, so the configuration counts as not measured and the next run measures it (an
  earlier ``ok`` attempt of it still stands);
- a file that is not a result table at all (bad header) is a ``ValueError`` naming file and line.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isaprof.config import STATUSES, Config

RESULTS = "results.csv"
# The configuration columns: two rows describe the same configuration iff these agree (the schema's).
KEY_COLUMNS = Config.key_names()
_NEEDED = ("block", "height", "width", "metric", "status")
_INTS = ("batch", "channels", "height", "width")
_NUMBERS = ("measured", "analytic", "spread", "samples")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?$")
_NOT_TEXT = re.compile("[\udc80-\udcff\x00]")  # undecodable bytes (surrogate escapes) or a NUL

Key = tuple[str, ...]
Row = dict[str, str]


class ResultsWarning(UserWarning):
    """A row of a result table was skipped (malformed or cut); the message names file and line."""


@dataclass
class Table:
    """A parsed result table: the valid rows in file order and what was wrong with the others."""

    path: Path
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # file line of each row
    problems: list[str] = field(default_factory=list)  # "file:line: why", one per skipped row
    broken: list[tuple[int, Key | None]] = field(default_factory=list)  # (position in rows, key)
    keys: list[Key] = field(default_factory=list)  # row_key of each row

    def copy(self) -> Table:
        """A copy whose lists can grow without changing this one (the rows themselves are shared)."""
        return Table(
            self.path, self.columns, list(self.rows), list(self.lines), list(self.problems),
            list(self.broken), list(self.keys),
        )  # fmt: skip

    def attempts(self) -> list[tuple[list[Row], bool]]:
        """The rows grouped into attempts (one configuration's rows from one write), each with
        ``complete`` (False when one of its rows was skipped)."""
        return list(_attempts(self))

    def latest(self) -> list[Row]:
        """Each configuration's rows from its winning attempt (see :func:`winners`), in file order."""
        keep = {id(r) for rows in winners(self).values() for r in rows}
        return [r for r in self.rows if id(r) in keep]

    def statuses(self) -> dict[Key, str]:
        """``{key: "ok" | "failed" | "skipped"}`` of every configuration that counts as measured."""
        return {k: attempt_status(rows) for k, rows in winners(self).items()}


def results_path(out: str | Path) -> Path:
    """``out/results.csv`` for a directory, ``out`` itself for a ``.csv`` path."""
    out = Path(out)
    return out if out.suffix == ".csv" else out / RESULTS


def read_table(out: str | Path, *, warn: bool = True) -> Table:
    """Parse the store at ``out`` (directory or ``.csv``); an absent or empty file is an empty table.

    ``warn``: issue one :class:`ResultsWarning` per skipped row. ``ValueError`` (naming file and
    line 1) if the header is not that of a result table. The file is append-only, so a re-read parses
    only the lines appended since the last read in this process (a sweep reads it before every
    configuration it claims); a file that was replaced or rewritten is parsed again from the start.
    """
    path = results_path(out)
    if not path.is_file():
        _CACHE.pop(path, None)
        return Table(path, [])
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        ident, offset, table, line = (st.st_dev, st.st_ino), 0, None, 1
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == ident and st.st_size >= cached[1]:
            _, at, tail, snapshot, next_line = cached
            f.seek(at - len(tail))
            if f.read(len(tail)) == tail:
                offset, table, line = at, snapshot.copy(), next_line
        f.seek(offset)
        data = f.read()
    if table is None:  # from the start: the header
        if not data.strip():
            return Table(path, [])
        first = data.split(b"\n", 1)[0]
        try:
            header = next(csv.reader([first.decode("utf-8", errors="surrogateescape").rstrip("\r")]), [])
        except csv.Error:  # not CSV at all (random bytes): not a results table, said below
            header = []
        missing = [c for c in _NEEDED if c not in header]
        if missing or _bad_text(header):
            what = f"lacks column(s) {', '.join(missing)}" if missing else "is not readable text"
            raise ValueError(
                f"{path}:1: not a results table (its header {what}); choose another --out directory"
            )
        table, line, skip = Table(path, header), 2, len(first) + 1
        if skip > len(data):  # a header cut by a crash: nothing more to read
            return table
        offset, data = skip, data[skip:]
    done = data.rfind(b"\n") + 1  # whole lines: parsed once and kept; the rest (a cut line) each time
    line = _parse(table, data[:done], line, cut_end=False)
    _CACHE[path] = (
        ident,
        offset + done,
        (b"" if offset + done == 0 else _tail(path, offset + done)),
        table.copy(),
        line,
    )
    if done < len(data):
        _parse(table, data[done:], line, cut_end=True)
    if warn:
        for p in table.problems:
            warnings.warn(f"{p}; its configuration counts as not measured", ResultsWarning, stacklevel=1)
    return table


_CACHE: dict[
    Path, tuple[tuple[int, int], int, bytes, Table, int]
] = {}  # path: (file id, offset, tail, table, line)


def _tail(path: Path, offset: int, n: int = 256) -> bytes:
    """The ``n`` bytes before ``offset``: a re-read checks them to see that the file was only appended to."""
    with path.open("rb") as f:
        f.seek(max(0, offset - n))
        return f.read(min(n, offset))


def _parse(table: Table, data: bytes, line: int, cut_end: bool) -> int:
    """Append the rows of ``data`` (lines of the file from ``line`` on) to ``table``; the next line number.

    ``cut_end``: ``data`` is the end of the file without a line end (its last row was cut by a crash).
    """
    header, width = table.columns, len(table.columns)
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline=""))
    records = list(_records(reader))
    for i, (end, cells) in enumerate(records):
        here, line = line, line + end - (records[i - 1][0] if i else 0)
        if not cells:  # a blank line (the end of a repaired cut line)
            continue
        why = _problem(header, cells, width)
        if why is None and cut_end and i == len(records) - 1:
            why = "cut: the file ends inside this row (a crash during a write)"
        if why is None:
            row = dict(zip(header, cells, strict=False))
            table.rows.append(row)
            table.keys.append(row_key(row))
            table.lines.append(here)
        else:
            table.problems.append(f"{table.path}:{here}: skipped a malformed row ({why})")
            table.broken.append((len(table.rows), _partial_key(header, cells)))
    return line


def read_rows(out: str | Path, *, latest: bool = True) -> list[Row]:
    """The store's rows (``[]`` if absent); with ``latest``, only each configuration's winning attempt."""
    table = read_table(out)
    return table.latest() if latest else list(table.rows)


def statuses(out: str | Path) -> dict[Key, str]:
    """``{key: "ok" | "failed" | "skipped"}`` of every configuration the store counts as measured."""
    return read_table(out).statuses()


def winners(table: Table) -> dict[Key, list[Row]]:
    """The attempt that stands for each configuration: its last complete attempt, unless an
    incomplete (cut) attempt came after it and it was not ``ok``: then none (not measured)."""
    out: dict[Key, list[Row]] = {}
    for rows, complete in _attempts(table):
        key = row_key(rows[0])
        if complete:
            out[key] = rows
        elif key in out and attempt_status(out[key]) != "ok":
            del out[key]
    return out


def attempt_status(rows: list[Row]) -> str:
    """``"ok"`` if every row is ok, ``"skipped"`` if the attempt was skipped, else ``"failed"``."""
    got = {r.get("status") for r in rows}
    if got == {"ok"}:
        return "ok"
    return "skipped" if got == {"skipped"} else "failed"


def canonical_options(options: Any) -> str:
    """Options (JSON string, dict or (name, value) pairs) as canonical JSON: sorted keys, tuples as lists."""
    if isinstance(options, str):
        return _canonical_text(options)
    return json.dumps(_jsonable(dict(options)), sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1 << 14)
def _canonical_text(text: str) -> str:
    """:func:`canonical_options` of a JSON string (cached: a table repeats a few option sets many times)."""
    options = json.loads(text) if text.strip() else {}
    return json.dumps(_jsonable(dict(options)), sort_keys=True, separators=(",", ":"))


def config_key(cfg: Any) -> Key:
    """Store key of a configuration object with the :data:`KEY_COLUMNS` as attributes."""
    return _key({c: getattr(cfg, c) for c in KEY_COLUMNS})


def row_key(row: dict[str, Any]) -> Key:
    """Store key of a result row."""
    return _key(row)


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(last file line, cells) of each record; a line csv cannot parse is an empty record."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            cells = ["\x00"]  # reported as malformed
        yield reader.line_num, cells


def _problem(header: list[str], cells: list[str], width: int) -> str | None:
    """Why ``cells`` is not a valid row, or None."""
    if len(cells) != width:
        return f"{len(cells)} fields, the header has {width}"
    if _bad_text(cells):
        return "bytes that are not UTF-8 text"
    row = dict(zip(header, cells, strict=False))
    if not row["block"]:
        return "no block"
    if row["status"] not in STATUSES:
        return f"status {row['status']!r} is none of {', '.join(STATUSES)}"
    for c in _INTS:
        if c in row and not (row[c].isdigit() and int(row[c]) > 0):
            return f"{c} {row[c]!r} is not a positive integer"
    for c in _NUMBERS:
        if c in row and row[c] and not _number(row[c]):
            return f"{c} {row[c]!r} is not a number"
    stamp = row.get("timestamp", "")
    if stamp[:1].isdigit() and not _TIMESTAMP.match(stamp):  # the last field: cut there, the count holds
        return f"timestamp {row['timestamp']!r} is cut or malformed"
    try:
        row_key(row)
    except ValueError:
        return f"options {row.get('options')!r} are not JSON"
    return None


def _partial_key(header: list[str], cells: list[str]) -> Key | None:
    """The configuration of a malformed row if its configuration columns are all there and sane."""
    row = dict(zip(header, cells, strict=False))
    if any(c not in row for c in KEY_COLUMNS) or _bad_text(cells) or not row["block"]:
        return None
    if not all(row[c].isdigit() for c in _INTS if c in row):
        return None
    try:
        return row_key(row)
    except ValueError:
        return None


def _attempts(table: Table) -> Iterator[tuple[list[Row], bool]]:
    """Group rows into attempts: one configuration's rows from one write.

    A new attempt starts when the key changes, when a metric repeats within the attempt, or at a row
    without metric (a whole-configuration failure, always an attempt of its own). A skipped row joins
    the attempt of its key around it (or is one of its own) and makes it incomplete.
    """
    broken: dict[int, list[Key | None]] = {}
    for pos, key in table.broken:
        broken.setdefault(pos, []).append(key)
    group: list[Row] = []
    gkey: Key | None = None
    complete = True
    for pos in range(len(table.rows) + 1):
        for key in broken.get(pos, []):
            if key is not None and key == gkey:
                complete = False
            elif key is not None:
                if group:
                    yield group, complete
                group, gkey, complete = [], None, True
                yield [_stub(key)], False
        if pos == len(table.rows):
            break
        row, key = table.rows[pos], table.keys[pos]
        metric = row.get("metric", "")
        new = (
            not group
            or key != gkey
            or not metric
            or not group[-1].get("metric", "")
            or any(r.get("metric") == metric for r in group)
        )
        if new and group:
            yield group, complete
            group, complete = [], True
        if not group:
            gkey = key
        group.append(row)
    if group:
        yield group, complete


def _stub(key: Key) -> Row:
    """A stand-in row carrying only a key (for an attempt whose only rows were skipped)."""
    return dict(zip(KEY_COLUMNS, key, strict=True))


def _key(values: dict[str, Any]) -> Key:
    out = []
    for c in KEY_COLUMNS:
        v = values.get(c)
        if c == "options":
            try:
                out.append(canonical_options(v if v is not None else {}))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"options {v!r} are not JSON") from e
        elif c == "path":
            out.append(cell_text(v) or "reference")  # rows written before paths existed are reference rows
        elif c == "layout":
            out.append(cell_text(v) or "map")  # rows written before layouts existed took a map
        else:
            out.append(cell_text(v))
    return tuple(out)


def cell_text(value: Any) -> str:
    """How a value is written to a CSV cell (and compared in a key): ``str(value)``, None as empty."""
    return "" if value is None else str(value)


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _bad_text(cells: list[str]) -> bool:
    return any(_NOT_TEXT.search(c) for c in cells)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
