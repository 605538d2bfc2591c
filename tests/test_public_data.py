"""Last.fm, Steam and Amazon in their downloaded formats, on small files written here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_llm_folder

from llara_kit.cli import cli
from llara_kit.data import DataError, DataSettings, prepare_data

SETTINGS = DataSettings(candidates=5, history=4, min_history=2, split=(0.5, 0.25, 0.25))
N_USERS, N_ITEMS, PER_USER = 12, 40, 8


def events() -> list[tuple[int, int, int]]:
    """(user, item, day) with distinct items per user, days increasing."""
    rng = np.random.default_rng(0)
    return [(u, int(i), 10 * t + u) for u in range(N_USERS)
            for t, i in enumerate(rng.choice(N_ITEMS, size=PER_USER, replace=False))]


def write_lastfm(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = ["userID\tartistID\ttagID\ttimestamp"]
    for u, i, day in events():
        ms = (1_200_000_000 + day * 86_400) * 1000
        lines += [f"{u + 2}\t{i + 1}\t{7}\t{ms}", f"{u + 2}\t{i + 1}\t{9}\t{ms + 5}"]  # two tags
    (folder / "user_taggedartists-timestamps.dat").write_text("\n".join(lines) + "\n")
    names = ['"Weird Al" Yankovic'] + [f"Artist {i}" for i in range(1, N_ITEMS)]
    artists = ["id\tname\turl\tpictureURL"] + [
        f"{i + 1}\t{name}\thttp://www.last.fm/music/a{i}\t"
        f"http://userserve-ak.last.fm/serve/252/{i}.jpg" for i, name in enumerate(names)]
    (folder / "artists.dat").write_text("\n".join(artists) + "\n")
    return folder


def write_steam(folder: Path) -> Path:
    folder.mkdir(parents=True)
    reviews = [repr({"username": f"gamer {u}", "hours": 1.5, "products": 3,
                     "product_id": str(70000 + i), "page_order": 0,
                     "date": f"2017-{1 + day // 28:02d}-{1 + day % 28:02d}",
                     "text": "It's 'fine'", "early_access": False, "page": 1})
               for u, i, day in events()]
    reviews.append(repr({"username": "nobody", "hours": 0.1, "text": "no product"}))
    with gzip.open(folder / "steam_reviews.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(reviews) + "\n")
    games = [repr({"publisher": "Studio", "genres": ["Action"], "app_name": f"Game {i}",
                   "title": f"Game {i}" if i else "Tom Clancy's Game", "release_date":
                   "2016-05-01", "id": str(70000 + i)}) for i in range(N_ITEMS)]
    games.append(repr({"app_name": "No id here", "release_date": "2012-01-01"}))
    with gzip.open(folder / "steam_games.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(games) + "\n")
    return folder


def write_amazon(folder: Path, release: int) -> Path:
    folder.mkdir(parents=True)
    if release == 2018:
        reviews = [{"overall": 5.0, "verified": True, "reviewTime": "09 13, 2009",
                    "reviewerID": f"A{u:05d}", "asin": f"B{i:09d}", "reviewText": "ok",
                    "unixReviewTime": 1_252_800_000 + day * 86_400} for u, i, day in events()]
        meta = [{"asin": f"B{i:09d}", "title": f"Controller &amp; Cable {i}", "brand": "X"}
                for i in range(N_ITEMS)]
        meta.append(meta[3])  # the 2018 metadata repeats some products
        names = ("Video_Games_5.json", "meta_Video_Games.json")
    else:
        reviews = [{"rating": 4.0, "title": "Review title, not the item's", "text": "ok",
                    "asin": f"X{i}", "parent_asin": f"P{i:04d}", "user_id": f"AE{u}",
                    "timestamp": (1_600_000_000 + day * 86_400) * 1000, "helpful_vote": 0,
                    "verified_purchase": True} for u, i, day in events()]
        meta = [{"main_category": "Books", "title": f"Book {i}", "parent_asin": f"P{i:04d}",
                 "average_rating": 4.5} for i in range(N_ITEMS)]
        names = ("Books.jsonl", "meta_Books.jsonl")
    for name, rows in zip(names, (reviews, meta), strict=True):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize(("dataset", "writer", "first_title", "title"), [
    ("lastfm", write_lastfm, '"Weird Al" Yankovic', "Artist {}"),
    ("steam", write_steam, "Tom Clancy's Game", "Game {}"),
    ("amazon", lambda f: write_amazon(f, 2018), "Controller & Cable 0", "Controller & Cable {}"),
    ("amazon", lambda f: write_amazon(f, 2023), "Book 0", "Book {}"),
])
def test_public_formats_prepare(tmp_path, dataset, writer, first_title, title):
    folder = writer(tmp_path / dataset)
    data, _ = prepare_data(dataset, {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    counts = data.manifest["counts"]
    assert counts["users"] == N_USERS and counts["items"] == N_ITEMS
    assert counts["interactions"] == N_USERS * PER_USER
    name = {i: first_title if i == 0 else title.format(i) for i in range(N_ITEMS)}
    expected = {tuple(name[i] for u2, i, _ in sorted(events(), key=lambda e: e[2]) if u2 == u)
                for u in range(N_USERS)}  # every user's titles in time order
    assert {tuple(data.titles[i] for i in seq) for seq in data.sequences} == expected
    skipped = data.manifest["skipped"]
    if dataset == "lastfm":
        assert skipped == {"repeated (user, artist) tag rows merged": N_USERS * PER_USER}
    if dataset == "steam":
        assert skipped["reviews without a user, product_id or date"] == 1
        assert skipped["metadata lines without an item id"] == 1


def test_amazon_needs_a_category_when_the_folder_has_several(tmp_path):
    folder = write_amazon(tmp_path / "a", 2023)
    (folder / "meta_Toys.jsonl").write_text("")
    with pytest.raises(DataError, match=r"holds 2 Amazon categories \(Books, Toys\); choose "
                                        r"one with --data-option category=NAME"):
        prepare_data("amazon", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    data, _ = prepare_data("amazon", {"data_dir": folder, "category": "Books"}, SETTINGS,
                           home=tmp_path / "home")
    assert data.manifest["counts"]["items"] == N_ITEMS


def test_python_literal_lines_are_data_never_code(tmp_path):
    folder = write_steam(tmp_path / "s")
    marker = tmp_path / "pwned"
    with gzip.open(folder / "steam_reviews.json.gz", "at", encoding="utf-8") as fh:
        fh.write(f"__import__('pathlib').Path({str(marker)!r}).touch()\n")
    with pytest.raises(DataError, match=r"steam_reviews.json.gz:98: neither JSON nor a Python "
                                        r"literal"):
        prepare_data("steam", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    assert not marker.exists()


@pytest.mark.parametrize(("dataset", "writer"), [
    ("lastfm", write_lastfm), ("steam", write_steam),
    ("amazon", lambda f: write_amazon(f, 2023)),
])
def test_public_formats_pretrain_and_train_through_the_cli(tmp_path, dataset, writer):
    folder = writer(tmp_path / dataset)
    data = ["--dataset", dataset, "--data-dir", str(folder), "--history", "4",
            "--candidates", "5", "--min-history", "2", "--split", "0.5,0.25,0.25"]
    runner = CliRunner()
    result = runner.invoke(cli, ["pretrain", "--encoder", "gru4rec", *data, "--epochs", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epochs_run"] >= 1
    result = runner.invoke(cli, [
        "train", "--encoder", "gru4rec", "--projector", "mlp", "--schedule", "linear", *data,
        "--llm", str(tiny_llm_folder()), "--template", "item",
        "--max-train-samples", "4", "--batch-size", "2", "--grad-accum", "1", "--precision", "fp32",
        "--out", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "adapter").is_dir()
