"""Built-in data-set plugins for public data in its downloaded form: LLaRA's other data sets
(Last.fm, Steam) and Amazon reviews, the family most LLM-recommendation papers use.

Each reader takes the folder of the downloaded files (``data_dir``) and returns ``RawData``;
what it merges or leaves out is counted in ``skipped``.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from llara_kit.data.raw import (
    DataError,
    RawData,
    parse_time,
    read_dict_lines,
    read_table,
    require_file,
)
from llara_kit.data.sources import assemble, data_dir_path
from llara_kit.hookspecs import Register, hookimpl


def _first_file(folder: Path, names: Iterable[str], what: str) -> Path:
    """The first of ``names`` present in ``folder`` (e.g. with or without ``.gz``)."""
    names = list(names)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return require_file(folder / names[0], f"{what} ({' or '.join(names)})")


def _earliest(events: Iterable[tuple[str, str, float]], skipped: Counter, what: str
              ) -> list[tuple[str, str, float]]:
    """One interaction per (user, item), at its first time, in file order otherwise."""
    first: dict[tuple[str, str], float] = {}
    for user, item, ts in events:
        key = (user, item)
        if key in first:
            skipped[what] += 1
            first[key] = min(first[key], ts)
        else:
            first[key] = ts
    return [(u, i, ts) for (u, i), ts in first.items()]


class LastFM:
    """HetRec 2011 Last.fm (hetrec2011-lastfm-2k): a user's artists in the order of their
    first tag (``user_taggedartists-timestamps.dat``, timestamps in ms), named by
    ``artists.dat``. Tab-separated, unquoted."""

    def __init__(self, data_dir: str | Path | None = None, encoding: str = "utf-8"):
        self.folder = data_dir_path(data_dir, "lastfm")
        self.encoding = encoding

    def read(self) -> RawData:
        tags = require_file(self.folder / "user_taggedartists-timestamps.dat",
                            "Last.fm tag assignments")
        artists = require_file(self.folder / "artists.dat", "Last.fm artists")
        header, rows = read_table(tags, "\t", encoding=self.encoding, quoted=False)
        u, i, t = (_index(tags, header, name) for name in ("userID", "artistID", "timestamp"))
        skipped: Counter = Counter()
        events = _earliest(((f[u], f[i], parse_time(f[t], tags, n) / 1000) for n, f in rows),
                           skipped, "repeated (user, artist) tag rows merged")
        header, rows = read_table(artists, "\t", encoding=self.encoding, quoted=False)
        k, name = _index(artists, header, "id"), _index(artists, header, "name")
        raw = assemble(events, ((n, f[k], f[name], None) for n, f in rows), artists,
                       [tags, artists])
        raw.skipped.update(skipped)
        return raw


def _index(path: Path, header: list[str] | None, name: str) -> int:
    if header is None or name not in header:
        raise DataError(f"{path}:1: column {name!r} is not in the header {header}; is this the "
                        "file as downloaded?")
    return header.index(name)


class Steam:
    """Steam reviews and games of Kang & McAuley (2018), as used by SASRec and LLaRA:
    ``steam_reviews.json(.gz)``, one Python-literal dict per line (``username`` or
    ``user_id``, ``product_id``, ``date``), and ``steam_games.json(.gz)`` (``id``, ``title``
    or ``app_name``, ``release_date``)."""

    def __init__(self, data_dir: str | Path | None = None, reviews: str | None = None,
                 games: str | None = None):
        self.folder = data_dir_path(data_dir, "steam")
        self.reviews = [reviews] if reviews else ["steam_reviews.json.gz", "steam_reviews.json"]
        self.games = [games] if games else ["steam_games.json.gz", "steam_games.json"]

    def read(self) -> RawData:
        reviews = _first_file(self.folder, self.reviews, "Steam reviews")
        games = _first_file(self.folder, self.games, "Steam games")
        skipped: Counter = Counter()

        def events():
            for n, r in read_dict_lines(reviews):
                user = r.get("user_id") or r.get("username")
                if not user or "product_id" not in r or "date" not in r:
                    skipped["reviews without a user, product_id or date"] += 1
                    continue
                yield str(user), str(r["product_id"]), parse_time(str(r["date"]), reviews, n)

        merged = _earliest(events(), skipped, "repeated (user, game) reviews merged")
        raw = assemble(merged, _items(games, ("id",), ("title", "app_name"), skipped,
                                      year_field="release_date"), games, [reviews, games])
        raw.skipped.update(skipped)
        return raw


def _items(path: Path, keys: tuple[str, ...], titles: tuple[str, ...], skipped: Counter,
           year_field: str | None = None):
    """(line, item, title, year) from a dict-per-line metadata file; lines without an id and
    repeated ids are counted and left out."""
    seen: set[str] = set()
    for n, record in read_dict_lines(path):
        item = next((str(record[k]) for k in keys if record.get(k)), None)
        if item is None:
            skipped["metadata lines without an item id"] += 1
            continue
        if item in seen:
            skipped["repeated metadata lines"] += 1
            continue
        seen.add(item)
        title = next((record[k] for k in titles if isinstance(record.get(k), str)), "")
        year = str(record.get(year_field) or "")[:4] if year_field else ""
        yield n, item, html.unescape(title), int(year) if year.isdigit() else None


# Amazon review files: 2018 (Ni et al.; reviewerID, asin, unixReviewTime in s) and 2023
# (Hou et al.; user_id, parent_asin, timestamp in ms), each with a meta_<category> file.
_AMAZON_REVIEWS = ("{c}.jsonl.gz", "{c}.jsonl", "{c}.json.gz", "{c}.json", "{c}_5.json.gz",
                   "{c}_5.json", "reviews_{c}.json.gz", "reviews_{c}_5.json.gz")
_AMAZON_META = ("meta_{c}.jsonl.gz", "meta_{c}.jsonl", "meta_{c}.json.gz", "meta_{c}.json")


class Amazon:
    """Amazon reviews, 2018 or 2023 release, one category: the reviews file
    (``<category>.jsonl``, ``<category>.json``, ``<category>_5.json``, gzipped or not) and
    its ``meta_<category>`` file. Items are ``parent_asin`` (2023) or ``asin`` (2018)."""

    def __init__(self, data_dir: str | Path | None = None, category: str | None = None):
        self.folder = data_dir_path(data_dir, "amazon")
        self.category = category or self._only_category()

    def _only_category(self) -> str:
        found = sorted({p.name.removeprefix("meta_").split(".")[0]
                        for p in self.folder.glob("meta_*.json*")})
        if len(found) != 1:
            raise DataError(
                f"--data-dir {str(self.folder)!r} holds {len(found)} Amazon categories "
                f"({', '.join(found) or 'no meta_<category> file'}); choose one with "
                "--data-option category=NAME."
            )
        return found[0]

    def read(self) -> RawData:
        c = self.category
        reviews = _first_file(self.folder, [n.format(c=c) for n in _AMAZON_REVIEWS],
                              f"Amazon {c} reviews")
        meta = _first_file(self.folder, [n.format(c=c) for n in _AMAZON_META],
                           f"Amazon {c} metadata")
        skipped: Counter = Counter()

        def events():
            for n, r in read_dict_lines(reviews):
                user = r.get("user_id") or r.get("reviewerID")
                item = r.get("parent_asin") or r.get("asin")
                if "timestamp" in r:  # 2023: milliseconds
                    ts = parse_time(str(r["timestamp"]), reviews, n) / 1000
                elif "unixReviewTime" in r:
                    ts = parse_time(str(r["unixReviewTime"]), reviews, n)
                else:
                    ts = None
                if not user or not item or ts is None:
                    skipped["reviews without a user, item or time"] += 1
                    continue
                yield str(user), str(item), ts

        merged = _earliest(events(), skipped, "repeated (user, item) reviews merged")
        raw = assemble(merged, _items(meta, ("parent_asin", "asin"), ("title",), skipped),
                       meta, [reviews, meta])
        raw.skipped.update(skipped)
        return raw


@hookimpl
def register_datasets(register: Register) -> None:
    register("lastfm", LastFM, description="HetRec 2011 Last.fm: tag timestamps + artists.dat")
    register("steam", Steam, description="Steam reviews + games (Kang & McAuley 2018)")
    register("amazon", Amazon, description="Amazon reviews 2018/2023 + meta, one category")
