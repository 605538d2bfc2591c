"""What a data-set plugin returns, and the careful file reading the built-ins share."""

from __future__ import annotations

import ast
import csv
import gzip
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from llara_kit.errors import LlaraKitError

# Why interactions were dropped (RawData.skipped keys): their item has no title to show.
UNTITLED = "interactions with an untitled item"
UNLISTED = "interactions with an item missing from the items file"


class DataError(LlaraKitError):
    """Bad input data: the message names the file, the line where it applies, and the fix."""


@dataclass
class RawData:
    """Interactions and item titles as a data-set plugin reads them.

    ``interactions`` keep file order, which breaks timestamp ties stably. ``skipped``
    counts what was left out and why; the core reports it and never drops silently.
    """

    interactions: list[tuple[str, str, float]]  # (user, item, timestamp), raw ids
    titles: dict[str, str]  # raw item id -> normalised title
    years: dict[str, int | None] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)  # files read, for the cache key
    skipped: Counter = field(default_factory=Counter)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> role -> column
    # raw item id -> its attributes (genres, tags, categories), where the data set has them
    attributes: dict[str, list[str]] = field(default_factory=dict)


def require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist; check the path or --data-dir.")
    return path


def read_rows(
    path: Path, sep: str, n_fields: int | None, *, encoding: str = "utf-8", header: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line, checking the field count."""
    with open(path, encoding=encoding, newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or (header and lineno == 1):
                continue
            fields = line.split(sep)
            if n_fields is not None and len(fields) != n_fields:
                raise DataError(
                    f"{path}:{lineno}: expected {n_fields} fields separated by {sep!r}, "
                    f"found {len(fields)}; fix that line or check the delimiter."
                )
            yield lineno, fields


def _undecodable_line(path: Path, encoding: str) -> tuple[int, int]:
    """(line, byte) of the first line of ``path`` that does not decode."""
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                return lineno, line[exc.start]
    return 0, 0


def _records(path: Path, delimiter: str, encoding: str, quoted: bool
             ) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank record, read by the csv module."""
    reader = None
    quoting = {} if quoted else {"quoting": csv.QUOTE_NONE}
    try:
        with open(path, encoding=encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True, **quoting)
            start = 1
            for fields in reader:
                if any(f.strip() for f in fields):
                    yield start, fields
                start = reader.line_num + 1
    except UnicodeDecodeError:
        lineno, byte = _undecodable_line(path, encoding)
        raise DataError(
            f"{path}:{lineno}: byte 0x{byte:02x} is not valid {encoding}; pass the file's "
            "encoding as a data option, e.g. --data-option encoding=latin-1."
        ) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise DataError(f"{path}:{line}: {exc}; fix the quoting on that line.") from None
    except LookupError:
        raise DataError(
            f"Unknown encoding {encoding!r} for {path}; use e.g. utf-8 or latin-1."
        ) from None


def read_table(path: Path, delimiter: str = ",", *, encoding: str = "utf-8",
               header: bool = True, quoted: bool = True
               ) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """A delimited text file read by the csv module (RFC 4180: fields quoted with ``"`` may
    hold the delimiter, quotes and newlines; ``quoted=False`` for files that never quote):
    (header or None, iterator of (line, fields)), blank lines dropped, every record checked
    against the header's (or first record's) width."""
    if len(delimiter) != 1:
        raise DataError(f"delimiter {delimiter!r} must be one character (tab: 'tab').")
    records = _records(path, delimiter, encoding, quoted)
    first = next(records, None)
    if first is None:
        raise DataError(f"{path} is empty; it needs {'a header row and ' if header else ''}"
                        "one row per record.")
    names = [h.strip() for h in first[1]] if header else None
    if header:
        first = next(records, None)
        if first is None:
            raise DataError(f"{path} has a header row but no records; add rows below it.")
    width = len(names) if names is not None else len(first[1])

    def checked() -> Iterator[tuple[int, list[str]]]:
        for lineno, fields in itertools.chain([first], records):
            if len(fields) != width:
                raise DataError(
                    f"{path}:{lineno}: expected {width} fields separated by {delimiter!r}, "
                    f"found {len(fields)}; quote fields that contain the delimiter, or check "
                    "the delimiter."
                )
            yield lineno, fields

    return names, checked()


def read_dict_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """(line, record) for each line of a JSON-lines file, plain or gzipped. A line that is not
    JSON is read as a Python literal (``ast.literal_eval``: data only, never code), the form
    of some public data sets."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=encoding) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    try:
                        record = ast.literal_eval(line.strip())
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise DataError(
                            f"{path}:{lineno}: neither JSON nor a Python literal; fix or remove "
                            "that line."
                        ) from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected one record ({{...}}) per line.")
                yield lineno, record
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid {encoding}; pass its encoding as a data option, "
                        "e.g. --data-option encoding=latin-1.") from None
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip
        raise DataError(f"{path}: cannot be read ({exc}); download it again.") from None


def parse_time(value: str, path: Path, lineno: int) -> float:
    """A Unix timestamp or an ISO date/time."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise DataError(
            f"{path}:{lineno}: timestamp {value!r} is neither a number nor an ISO date; "
            "fix that line."
        ) from None


# Articles that MovieLens moves to the end of a title ("Usual Suspects, The").
_ARTICLES = "The|A|An|La|Le|Les|L'|Il|El|Das|Der|Die|Det|Den"
_TRAILING_ARTICLE = re.compile(rf"^(?P<main>.+?), (?P<art>{_ARTICLES})(?P<alt> \(.*\))?$")
_YEAR = re.compile(r"\s*\((?P<year>\d{4})\)\s*$")


def normalise_title(raw: str) -> tuple[str, int | None]:
    """``"Usual Suspects, The (1995)"`` -> ``("The Usual Suspects", 1995)``."""
    title = " ".join(raw.split())
    year = None
    match = _YEAR.search(title)
    if match:
        year = int(match["year"])
        title = title[: match.start()]
    match = _TRAILING_ARTICLE.match(title)
    if match:
        sep = "" if match["art"].endswith("'") else " "
        title = f"{match['art']}{sep}{match['main']}{match['alt'] or ''}"
    return title, year
