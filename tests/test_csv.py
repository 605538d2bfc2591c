"""CSV as real exporters write it: quoted fields, other header names, encodings, bad files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from llara_kit.cli import cli
from llara_kit.data import DataError, DataSettings, prepare_data

SETTINGS = DataSettings(candidates=5, history=4, min_history=2, split=(0.5, 0.25, 0.25))
TITLES = ['Harry Connick, Jr.', 'The "Best" Of', "Line\nbreak", "Plain", "Ünïcödé"]


def export(folder, n_users=12, n_items=40, header=("user_id", "item_id", "timestamp"),
           title_header=("item_id", "title"), delimiter=","):
    """Files as pandas' to_csv writes them (csv module, minimal quoting)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        for u in range(n_users):
            for t, i in enumerate(rng.choice(n_items, size=8, replace=False)):
                writer.writerow([1000 + u, int(i), 1_600_000_000 + t])
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(title_header)
        for i in range(n_items):
            writer.writerow([i, TITLES[i] if i < len(TITLES) else f"Artist {i}"])
    return folder


def test_a_pandas_export_prepares_with_no_options(tmp_path):
    folder = export(tmp_path / "lastfm-like")
    data, _ = prepare_data("csv", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    assert data.manifest["counts"]["items"] == 40 and data.manifest["counts"]["interactions"] == 96
    titles = set(data.titles)
    assert {"Harry Connick, Jr.", 'The "Best" Of', "Line break", "Ünïcödé"} <= titles
    assert data.manifest["columns"] == {
        "interactions.csv": {"user": "user_id", "item": "item_id", "timestamp": "timestamp"},
        "items.csv": {"item": "item_id", "title": "title"}}
    result = CliRunner().invoke(cli, ["data", "info", "--dataset", "csv", "--data-dir",
                                      str(folder), "--candidates", "5", "--history", "4",
                                      "--min-history", "2", "--split", "0.5,0.25,0.25"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "item=item_id, timestamp=timestamp, user=user_id" in result.output


@pytest.mark.parametrize(("header", "title_header"), [
    (("userId", "movieId", "ts"), ("movieId", "name")),
    (("User ID", "item", "time"), ("item", "Title")),
])
def test_common_column_names_are_recognised(tmp_path, header, title_header):
    folder = export(tmp_path / "d", header=header, title_header=title_header, delimiter=";")
    data, _ = prepare_data("csv", {"data_dir": folder, "delimiter": ";"}, SETTINGS,
                           home=tmp_path / "home")
    assert data.manifest["columns"]["interactions.csv"]["user"] == header[0]
    assert "Harry Connick, Jr." in data.titles


def test_files_without_a_header(tmp_path):
    folder = export(tmp_path / "d")
    for name in ("interactions.csv", "items.csv"):
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    data, _ = prepare_data("csv", {"data_dir": folder, "header": False}, SETTINGS,
                           home=tmp_path / "home")
    assert data.manifest["counts"]["interactions"] == 96
    assert data.manifest["columns"]["items.csv"] == {"item": "column 1", "title": "column 2"}


def test_an_undecodable_byte_names_the_line_and_the_fix(tmp_path):
    folder = export(tmp_path / "d")
    path = folder / "items.csv"
    lines = path.read_bytes().split(b"\n")
    lines[9] = "8,Café Tacuba".encode("latin-1")  # line 10 in Latin-1 in a UTF-8 file
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as err:
        prepare_data("csv", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    assert str(err.value) == (
        f"{path}:10: byte 0xe9 is not valid utf-8; pass the file's encoding as a data option, "
        "e.g. --data-option encoding=latin-1.")
    result = CliRunner().invoke(cli, ["data", "info", "--dataset", "csv", "--data-dir",
                                      str(folder)])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    other = export(tmp_path / "latin")  # the whole file in Latin-1 reads with the option
    for name in ("interactions.csv", "items.csv"):
        p = other / name
        p.write_bytes(p.read_text(encoding="utf-8").encode("latin-1"))
    data, _ = prepare_data("csv", {"data_dir": other, "encoding": "latin-1"}, SETTINGS,
                           home=tmp_path / "home")
    assert "Ünïcödé" in data.titles


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty; it needs a header row and one row per record."),
    ("item_id,title\n", "has a header row but no records; add rows below it."),
    ('item_id,title\n1,"unterminated\n', "fix the quoting on that line"),
])
def test_empty_header_only_and_broken_quoting(tmp_path, content, message):
    folder = export(tmp_path / "d")
    (folder / "items.csv").write_text(content)
    with pytest.raises(DataError, match="items.csv.*" + message.replace(".", r"\.")):
        prepare_data("csv", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")


def test_named_columns_that_are_absent(tmp_path):
    folder = export(tmp_path / "d")
    with pytest.raises(DataError, match=r"interactions.csv:1: column 'who' \(user\) is not in "
                                        r"the header \['user_id', 'item_id', 'timestamp'\]"):
        prepare_data("csv", {"data_dir": folder, "user_col": "who"}, SETTINGS,
                     home=tmp_path / "home")
    with pytest.raises(DataError, match=r"delimiter '::' must be one character"):
        prepare_data("csv", {"data_dir": folder, "delimiter": "::"}, SETTINGS,
                     home=tmp_path / "home")


def test_too_few_users_after_untitled_items_are_dropped_names_the_cause(tmp_path):
    folder = export(tmp_path / "untitled")
    rows = list(csv.reader(open(folder / "items.csv", encoding="utf-8")))
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([rows[0]] + [[i, t if int(i) < 6 else ""] for i, t in rows[1:]])
    with pytest.raises(DataError) as caught:
        prepare_data("csv", {"data_dir": folder}, SETTINGS, home=tmp_path / "home")
    message = str(caught.value)
    dropped = int(message.split(" of ")[0].replace(",", ""))
    assert message.startswith(f"{dropped} of 96 interactions were dropped because their item "
                              "has no title") and dropped > 48, message
