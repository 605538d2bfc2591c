"""Built-in data-set plugins: ml-100k (default), ml-1m, csv and recbole atomic files.

Each factory takes keyword options (``data_dir`` first) and returns a reader whose
``read()`` gives ``RawData``. Readers check their files and report every skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from llara_kit.data.raw import (
    UNLISTED,
    UNTITLED,
    DataError,
    RawData,
    normalise_title,
    parse_time,
    read_rows,
    read_table,
    require_file,
)
from llara_kit.hookspecs import Register, hookimpl

InteractionRows = Iterable[tuple[str, str, float]]  # (user, item, timestamp)
ItemRows = Iterable[tuple[int, str, str, int | None]]  # (line, item, raw title, year)


def assemble(interactions: InteractionRows, items: ItemRows, items_path: Path,
             sources: list[Path], attributes: dict[str, list[str]] | None = None) -> RawData:
    """Join interactions with titled items; count what cannot be used. ``attributes``: raw
    item id -> its attributes (genres, tags), kept for the titled items."""
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
    # one string object per user and item, however often they recur (not one per row)
    users, titled = {}, {item: item for item in raw.titles}
    for user, item, ts in interactions:
        if item in titled:
            raw.interactions.append((users.setdefault(user, user), titled[item], ts))
        elif item in raw.years:
            raw.skipped[UNTITLED] += 1
        else:
            raw.skipped[UNLISTED] += 1
    if not raw.interactions:
        raise DataError(
            f"No usable interactions: none of them names an item with a title in {items_path}; "
            "check that the two files belong together."
        )
    raw.attributes = {item: values for item, values in (attributes or {}).items()
                      if item in raw.titles and values}
    return raw


def split_attributes(value: str, separator: str) -> list[str]:
    """An attribute field as a list: split on ``separator``, blanks and repeats dropped."""
    return list(dict.fromkeys(v.strip() for v in value.split(separator) if v.strip()))


# The 19 genre flags of GroupLens ml-100k's u.item (columns 6-24), in the order of u.genre.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                 "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                 "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _year(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def data_dir_path(data_dir: str | Path | None, dataset: str) -> Path:
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
        folder = data_dir_path(self.data_dir, "ml-100k")
        data = require_file(folder / "u.data", "MovieLens-100K ratings")
        item = require_file(folder / "u.item", "MovieLens-100K items")
        interactions = (
            (f[0], f[1], parse_time(f[3], data, n)) for n, f in read_rows(data, "\t", 4)
        )
        rows = list(read_rows(item, "|", 24, encoding="latin-1"))
        items = ((n, f[0], f[1], _year(f[2][-4:])) for n, f in rows)
        genres = {f[0]: [g for g, flag in zip(ML100K_GENRES, f[5:], strict=True)
                         if flag == "1" and g != "unknown"] for _, f in rows}
        return assemble(interactions, items, item, [data, item], genres)


class MovieLens1M:
    """GroupLens ml-1m: ``ratings.dat`` and ``movies.dat`` (``::``-separated, latin-1)."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = data_dir

    def read(self) -> RawData:
        folder = data_dir_path(self.data_dir, "ml-1m")
        ratings = require_file(folder / "ratings.dat", "MovieLens-1M ratings")
        movies = require_file(folder / "movies.dat", "MovieLens-1M movies")
        interactions = (
            (f[0], f[1], parse_time(f[3], ratings, n))
            for n, f in read_rows(ratings, "::", 4, encoding="latin-1")
        )
        rows = list(read_rows(movies, "::", 3, encoding="latin-1"))
        items = ((n, f[0], f[1], None) for n, f in rows)
        genres = {f[0]: split_attributes(f[2], "|") for _, f in rows}
        return assemble(interactions, items, movies, [ratings, movies], genres)


# Column names recognised when the configured ones are absent, compared without case, "_",
# "-" or spaces (userId = user_id = "User ID").
COLUMN_ALIASES = {
    "user": ("user", "userid", "uid", "username", "reviewerid", "customerid", "visitorid"),
    "item": ("item", "itemid", "iid", "movieid", "productid", "asin", "artistid", "gameid",
             "appid", "trackid", "bookid"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unixreviewtime", "eventtime",
                  "createdat"),
    "title": ("title", "name", "itemname", "movietitle", "moviename", "artistname",
              "productname"),
}


def _fold(name: str) -> str:
    return "".join(c for c in name.casefold() if c not in "_- ")


class CsvData:
    """Your own data: an interactions file and an items file, read as RFC 4180 CSV.

    Defaults: ``interactions.csv`` (user, item, timestamp) and ``items.csv`` (item, title) in
    ``data_dir``, comma-separated, UTF-8, each with a header row whose columns are found by
    name (common spellings such as ``user_id``, ``movieId`` or ``ts`` are recognised) or named
    by the ``*_col`` options; ``header=false`` takes the columns in that order (or the
    ``*_col`` options as 0-based positions). Timestamps are numbers or ISO dates.
    ``attributes_col`` names a column of items.csv holding the item's attributes (genres,
    tags), split on ``attribute_separator``.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        interactions: str = "interactions.csv",
        items: str = "items.csv",
        user_col: str | int | None = None,
        item_col: str | int | None = None,
        time_col: str | int | None = None,
        title_col: str | int | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
        header: bool = True,
        attributes_col: str | int | None = None,
        attribute_separator: str = "|",
    ):
        folder = Path(data_dir).expanduser() if data_dir is not None else Path.cwd()
        self.interactions_path = folder / interactions
        self.items_path = folder / items
        self.chosen = {"user": user_col, "item": item_col, "timestamp": time_col,
                       "title": title_col, "attributes": attributes_col}
        self.attribute_separator = attribute_separator
        self.delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
        self.encoding, self.header = encoding, header

    def _column(self, path: Path, names: list[str] | None, role: str, position: int
                ) -> tuple[int, str]:
        """(index, name) of ``role``'s column: the configured name or position, else the
        first recognised spelling (without a header: ``position``)."""
        chosen = self.chosen[role]
        if names is None:
            index = chosen if isinstance(chosen, int) else position
            return index, f"column {index + 1}"
        if chosen is not None:
            if str(chosen) in names:
                return names.index(str(chosen)), str(chosen)
            raise DataError(
                f"{path}:1: column {str(chosen)!r} ({role}) is not in the header {names}; "
                f"name one of those with the {role.replace('timestamp', 'time')}_col data option."
            )
        folded = [_fold(n) for n in names]
        for alias in COLUMN_ALIASES[role]:
            if alias in folded:
                return folded.index(alias), names[folded.index(alias)]
        raise DataError(
            f"{path}:1: no {role} column in the header {names}; name it with --data-option "
            f"{role.replace('timestamp', 'time')}_col=NAME."
        )

    def _read(self, path: Path, roles: tuple[str, ...]):
        names, records = read_table(path, self.delimiter, encoding=self.encoding,
                                    header=self.header)
        found = [self._column(path, names, role, position)
                 for position, role in enumerate(roles)]
        last = max(i for i, _ in found)
        for lineno, fields in records:
            if last >= len(fields):
                raise DataError(f"{path}:{lineno}: has {len(fields)} fields, fewer than the "
                                "column positions asked for; check the *_col options.")
            yield lineno, [fields[i] for i, _ in found]
        self.columns[path.name] = {role: name for role, (_, name) in zip(roles, found,
                                                                           strict=True)}

    def read(self) -> RawData:
        inter = require_file(self.interactions_path, "Interactions")
        items = require_file(self.items_path, "Items")
        self.columns: dict[str, dict[str, str]] = {}
        interaction_rows = ((u, i, parse_time(t, inter, n))
                            for n, (u, i, t) in self._read(inter, ("user", "item", "timestamp")))
        roles = ("item", "title") + (("attributes",) if self.chosen["attributes"] is not None
                                     else ())
        rows = list(self._read(items, roles))
        item_rows = ((n, f[0], f[1], None) for n, f in rows)
        attributes = {f[0]: split_attributes(f[2], self.attribute_separator)
                      for _, f in rows if len(f) > 2}
        raw = assemble(interaction_rows, item_rows, items, [inter, items], attributes)
        raw.columns = self.columns
        return raw


class RecBoleAtomic:
    """RecBole atomic files ``<name>.inter`` and ``<name>.item`` (tab-separated, typed header)."""

    def __init__(self, data_dir: str | Path | None = None, name: str | None = None,
                 title_field: str | None = None, attribute_field: str = "class"):
        self.folder = data_dir_path(data_dir, "recbole")
        self.name = name or self.folder.name
        self.title_field = title_field
        self.attribute_field = attribute_field  # a token_seq field (space-separated), if any

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
        ak = th.index(self.attribute_field) if self.attribute_field in th else None
        interactions = (
            (f[u], f[i], parse_time(f[t], inter, n))
            for n, f in read_rows(inter, "\t", len(ih), header=True)
        )
        rows = list(read_rows(item, "\t", len(th), header=True))
        items = ((n, f[ik], f[tk], _year(f[yk]) if yk is not None else None) for n, f in rows)
        attributes = ({} if ak is None
                      else {f[ik]: split_attributes(f[ak], " ") for _, f in rows})
        return assemble(interactions, items, item, [inter, item], attributes)


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
