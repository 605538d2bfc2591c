"""Built-in data-set plugins: ml-100k (default), ml-1m, csv and recbole atomic files.

Each factory takes keyword options (``data_dir`` first) and returns a reader whose
``read()`` gives ``RawData``. Readers check their files and report every skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from llara_kit.data.raw import (
    DataError,
    RawData,
    normalise_title,
    parse_time,
    read_rows,
    require_file,
)
from llara_kit.hookspecs import Register, hookimpl

InteractionRows = Iterable[tuple[str, str, float]]  # (user, item, timestamp)
ItemRows = Iterable[tuple[int, str, str, int | None]]  # (line, item, raw title, year)


def assemble(interactions: InteractionRows, items: ItemRows, items_path: Path,
             sources: list[Path]) -> RawData:
    """Join interactions with titled items; count what cannot be used."""
    raw = RawData(interactions=[], titles={}, sources=sources)
    for lineno, item, raw_title, year in items:
        if item in raw.titles or item in raw.years:
            raise DataError(
                f"{items_path}:{lineno}: item {item!r} is listed twice; keep one line per item."
            )
        title, parsed_year = normalise_title(raw_title)
        raw.years[item] = parsed_year if parsed_year is not None else year  # title first
        if title:
            raw.titles[item] = title
        else:
            raw.skipped["items without a title"] += 1
    for user, item, ts in interactions:
        if item in raw.titles:
            raw.interactions.append((user, item, ts))
        elif item in raw.years:
            raw.skipped["interactions with an untitled item"] += 1
        else:
            raw.skipped["interactions with an item missing from the items file"] += 1
    if not raw.interactions:
        raise DataError(
            f"No usable interactions: none of them names an item with a title in {items_path}; "
            "check that the two files belong together."
        )
    return raw


def _year(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def _data_dir(data_dir: str | Path | None, dataset: str) -> Path:
    if data_dir is None:
        raise DataError(f"Data set {dataset!r} needs --data-dir pointing at its files.")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"--data-dir {str(path)!r} is not a folder; pass the folder of the files.")
    return path


class MovieLens100K:
    """GroupLens ml-100k (``u.data``, ``u.item``) or, by default, RecBole's shipped copy."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = data_dir

    def read(self) -> RawData:
        if self.data_dir is None:
            return RecBoleAtomic(_recbole_example_dir("ml-100k"), name="ml-100k").read()
        folder = _data_dir(self.data_dir, "ml-100k")
        data = require_file(folder / "u.data", "MovieLens-100K ratings")
        item = require_file(folder / "u.item", "MovieLens-100K items")
        interactions = (
            (f[0], f[1], parse_time(f[3], data, n)) for n, f in read_rows(data, "\t", 4)
        )
        items = (
            (n, f[0], f[1], _year(f[2][-4:]))
            for n, f in read_rows(item, "|", 24, encoding="latin-1")
        )
        return assemble(interactions, items, item, [data, item])


class MovieLens1M:
    """GroupLens ml-1m: ``ratings.dat`` and ``movies.dat`` (``::``-separated, latin-1)."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = data_dir

    def read(self) -> RawData:
        folder = _data_dir(self.data_dir, "ml-1m")
        ratings = require_file(folder / "ratings.dat", "MovieLens-1M ratings")
        movies = require_file(folder / "movies.dat", "MovieLens-1M movies")
        interactions = (
            (f[0], f[1], parse_time(f[3], ratings, n))
            for n, f in read_rows(ratings, "::", 4, encoding="latin-1")
        )
        items = ((n, f[0], f[1], None) for n, f in read_rows(movies, "::", 3, encoding="latin-1"))
        return assemble(interactions, items, movies, [ratings, movies])


class CsvData:
    """Your own data: an interactions file and an items file, each with a header row.

    Defaults: ``interactions.csv`` with columns user,item,timestamp and ``items.csv`` with
    columns item,title, comma-separated, in ``data_dir``. Timestamps are numbers or ISO dates.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        interactions: str = "interactions.csv",
        items: str = "items.csv",
        user_col: str = "user",
        item_col: str = "item",
        time_col: str = "timestamp",
        title_col: str = "title",
        delimiter: str = ",",
    ):
        folder = Path(data_dir).expanduser() if data_dir is not None else Path.cwd()
        self.interactions_path = folder / interactions
        self.items_path = folder / items
        self.user_col, self.item_col, self.time_col = user_col, item_col, time_col
        self.title_col = title_col
        self.delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)

    def _columns(self, path: Path, wanted: list[str]) -> tuple[int, list[int]]:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split(self.delimiter)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: column(s) {', '.join(map(repr, missing))} not in the header "
                f"{header}; name the columns with the data options or fix the header."
            )
        return len(header), [header.index(c) for c in wanted]

    def read(self) -> RawData:
        inter = require_file(self.interactions_path, "Interactions")
        items = require_file(self.items_path, "Items")
        n_inter, (u, i, t) = self._columns(inter, [self.user_col, self.item_col, self.time_col])
        n_items, (ik, tk) = self._columns(items, [self.item_col, self.title_col])
        interaction_rows = (
            (f[u], f[i], parse_time(f[t], inter, n))
            for n, f in read_rows(inter, self.delimiter, n_inter, header=True)
        )
        item_rows = (
            (n, f[ik], f[tk], None)
            for n, f in read_rows(items, self.delimiter, n_items, header=True)
        )
        return assemble(interaction_rows, item_rows, items, [inter, items])


class RecBoleAtomic:
    """RecBole atomic files ``<name>.inter`` and ``<name>.item`` (tab-separated, typed header)."""

    def __init__(self, data_dir: str | Path | None = None, name: str | None = None,
                 title_field: str | None = None):
        self.folder = _data_dir(data_dir, "recbole")
        self.name = name or self.folder.name
        self.title_field = title_field

    def _header(self, path: Path) -> list[str]:
        with open(path, encoding="utf-8") as fh:
            return [f.split(":")[0] for f in fh.readline().rstrip("\r\n").split("\t")]

    def _index(self, path: Path, header: list[str], field: str) -> int:
        if field not in header:
            raise DataError(
                f"{path}:1: field {field!r} is not in the header {header}; "
                "RecBole atomic files need user_id, item_id and timestamp."
            )
        return header.index(field)

    def read(self) -> RawData:
        inter = require_file(self.folder / f"{self.name}.inter", "RecBole interactions")
        item = require_file(self.folder / f"{self.name}.item", "RecBole items")
        ih, th = self._header(inter), self._header(item)
        u, i, t = (self._index(inter, ih, f) for f in ("user_id", "item_id", "timestamp"))
        title_field = self.title_field or next(
            (f for f in th if "title" in f or f.endswith("name")), "title"
        )
        ik, tk = (self._index(item, th, f) for f in ("item_id", title_field))
        yk = th.index("release_year") if "release_year" in th else None
        interactions = (
            (f[u], f[i], parse_time(f[t], inter, n))
            for n, f in read_rows(inter, "\t", len(ih), header=True)
        )
        items = (
            (n, f[ik], f[tk], _year(f[yk]) if yk is not None else None)
            for n, f in read_rows(item, "\t", len(th), header=True)
        )
        return assemble(interactions, items, item, [inter, item])


def _recbole_example_dir(name: str) -> Path:
    """The example data set shipped inside the ``recbole`` package, found without importing it."""
    try:
        dist = metadata.distribution("recbole")
    except metadata.PackageNotFoundError:
        raise DataError(
            f"{name} ships inside the recbole package, which is not installed; run "
            "`pip install --no-deps recbole==1.2.1` or pass --data-dir with the GroupLens files."
        ) from None
    return Path(dist.locate_file(f"recbole/dataset_example/{name}"))


@hookimpl
def register_datasets(register: Register) -> None:
    register("ml-100k", MovieLens100K, description="MovieLens-100K (default; shipped by recbole)")
    register("ml-1m", MovieLens1M, description="MovieLens-1M: ratings.dat, movies.dat")
    register("csv", CsvData, description="your interactions.csv + items.csv")
    register("recbole", RecBoleAtomic, description="RecBole atomic <name>.inter + <name>.item")
