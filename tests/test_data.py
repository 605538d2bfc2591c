"""Data sets and the LLaRA protocol, on the real MovieLens-100K and on small files written here."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import chisquare

from llara_kit.cli import cli
from llara_kit.data import DataError, DataSettings, prepare_data, protocol
from llara_kit.data.raw import normalise_title
from llara_kit.errors import LlaraKitError


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    data, reused = prepare_data("ml-100k", home=tmp_path_factory.mktemp("home"))
    assert not reused
    return data


def test_ml100k_counts_and_split(ml100k):
    counts = ml100k.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (943, 1682, 100_000)
    assert (counts["train_users"], counts["valid_users"], counts["test_users"]) == (754, 94, 95)
    assert ml100k.manifest["skipped"] == {}
    users = [set(ml100k.splits[s].users.tolist()) for s in ("train", "valid", "test")]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert sum(map(len, users)) == 943
    assert ml100k.titles[12] == "The Usual Suspects" and ml100k.years[12] == 1995


def _check_candidates(data, split, candidates):
    s = data.splits[split]
    assert candidates.shape == (len(s), data.settings.candidates)
    for user, target, cands in zip(s.users, s.targets, candidates, strict=True):
        assert len(set(cands.tolist())) == len(cands)  # distinct
        assert target in cands and cands.min() >= 1 and cands.max() <= data.n_items
        negatives = set(cands.tolist()) - {int(target)}
        assert not negatives & set(data.sequences[user].tolist())  # never interacted with


@pytest.mark.parametrize("split", ["valid", "test"])
def test_stored_candidates_are_unseen_distinct_and_hold_the_target(ml100k, split):
    _check_candidates(ml100k, split, ml100k.splits[split].candidates)


def test_test_samples_are_the_last_item_with_its_history(ml100k):
    s = ml100k.splits["test"]
    for user, hist, length, target in zip(s.users, s.history, s.lengths, s.targets, strict=True):
        seq = ml100k.sequences[user]
        assert target == seq[-1] and length == min(10, len(seq) - 1)
        assert (hist[:length] == seq[-1 - length : -1]).all() and not hist[length:].any()


def test_train_samples_are_every_prefix_with_min_history(ml100k):
    s = ml100k.splits["train"]
    expected = sum(len(ml100k.sequences[u]) - 3 for u in np.unique(s.users))
    assert len(s) == expected == ml100k.manifest["counts"]["train_samples"]
    assert s.lengths.min() == 3 and s.lengths.max() == 10


def test_leave_one_out_protocol(ml100k, tmp_path):
    loo, _ = prepare_data("ml-100k", settings=DataSettings(protocol="loo"), home=tmp_path)
    counts = loo.manifest["counts"]
    assert counts["train_users"] == counts["valid_users"] == counts["test_users"] == 943
    valid, test, train = (loo.splits[s] for s in ("valid", "test", "train"))
    for i, user in enumerate(test.users):
        seq = loo.sequences[user]
        assert test.targets[i] == seq[-1] and valid.targets[i] == seq[-2]
        assert valid.history_of(i) == seq[-12:-2].tolist()
    assert len(train) == sum(len(s) - 3 - 2 for s in loo.sequences)  # prefixes less the tail
    last_train = {int(u): int(t) for u, t in zip(train.users, train.targets, strict=True)}
    assert all(last_train[int(u)] == loo.sequences[u][-3] for u in test.users)
    _check_candidates(loo, "test", test.candidates)
    # popularity counts what training sees: every user's sequence less the last two items
    assert len(loo.training_interactions()) == 100_000 - 2 * 943
    assert loo.hash != ml100k.hash
    with pytest.raises(LlaraKitError, match="Unknown protocol 'kfold'; use one of: llara, loo"):
        DataSettings(protocol="kfold")


def test_target_position_is_not_constant(ml100k):
    s = ml100k.splits["test"]
    positions = (s.candidates == s.targets[:, None]).argmax(axis=1)
    assert len(set(positions.tolist())) > 5


def test_train_candidates_per_epoch(ml100k):
    first, again, second = (ml100k.train_candidates(e) for e in (0, 0, 1))
    assert (first == again).all() and not (first == second).all()
    _check_candidates(ml100k, "train", second)
    train, rows = ml100k.splits["train"], np.arange(3, len(ml100k.splits["train"]), 97)
    some = ml100k.train_candidates(1, rows)  # drawn for those samples only
    assert some.shape == (len(rows), 20) and (some == train.targets[rows, None]).sum(1).all()
    for user, cands in zip(train.users[rows], some, strict=True):
        assert len(set(cands.tolist())) == 20
        assert len(set(cands.tolist()) & set(ml100k.sequences[user].tolist())) == 1


def test_preparing_twice_gives_identical_hash_and_candidates(ml100k, tmp_path):
    fresh, reused = prepare_data("ml-100k", home=tmp_path)
    assert not reused and fresh.hash == ml100k.hash
    assert (fresh.splits["test"].candidates == ml100k.splits["test"].candidates).all()
    cached, reused = prepare_data("ml-100k", home=tmp_path)
    assert reused and cached.path == fresh.path and cached.hash == fresh.hash


def _drawn_subsets(seen, n_items, k, pool=None, rows=20_000, seed=0):
    """Counts of each set of k negatives drawn for ``rows`` samples of one user."""
    lists = protocol.draw_candidates(
        np.zeros(rows, dtype=np.int64), np.full(rows, seen[0]), [np.array(seen)], n_items,
        k + 1, np.random.default_rng(seed), chunk=7_000, pool=pool)
    negatives = [tuple(sorted(set(row) - {seen[0]})) for row in lists.tolist()]
    assert all(len(n) == k for n in negatives)  # distinct, the target once
    return Counter(negatives), lists


@pytest.mark.parametrize("pooled", [False, True])
def test_negatives_are_uniform_over_the_unseen_items(pooled):
    """Every set of unseen items (in the pool) is drawn about equally often, and the target
    sits in each slot about equally often: chi-square tests with a fixed seed (they fail on a
    biased sampler, e.g. one that prefers low ids or keeps the first draw of a slot)."""
    seen, n_items, k = [2, 3, 5, 9], 10, 3
    pool = None
    if pooled:  # unseen in the pool: 6, 7, 8, 10
        pool = np.ones(n_items + 1, dtype=bool)
        pool[[0, 1, 4]] = False
    counts, lists = _drawn_subsets(seen, n_items, k, pool)
    unseen = [i for i in range(1, n_items + 1) if i not in seen and (pool is None or pool[i])]
    expected = list(itertools.combinations(unseen, k))
    assert set(counts) == set(expected) and len(expected) == (4 if pooled else 20)
    assert chisquare([counts[c] for c in expected]).pvalue > 1e-3
    assert chisquare(np.bincount((lists == seen[0]).argmax(axis=1))).pvalue > 1e-3


def test_a_user_who_saw_all_but_k_items_gets_exactly_those():
    counts, _ = _drawn_subsets(list(range(1, 46)), 50, 5, rows=50)
    assert set(counts) == {(46, 47, 48, 49, 50)}
    with pytest.raises(DataError, match="has 5 unseen items to draw 6 negatives from; lower"):
        _drawn_subsets(list(range(1, 46)), 50, 6, rows=50)


def test_another_seed_gives_another_hash(ml100k, tmp_path):
    other, _ = prepare_data("ml-100k", settings=DataSettings(seed=1), home=tmp_path)
    assert other.hash != ml100k.hash and other.path != ml100k.path


@pytest.mark.parametrize(("raw", "expected"), [
    ("Usual Suspects, The (1995)", ("The Usual Suspects", 1995)),
    ("Toy Story (1995)", ("Toy Story", 1995)),
    ("Horseman on the Roof, The (Hussard sur le toit, Le) (1995)",
     ("The Horseman on the Roof (Hussard sur le toit, Le)", 1995)),
    ("Shawshank Redemption, The", ("The Shawshank Redemption", None)),
    ("Enfer, L' (1994)", ("L'Enfer", 1994)),
    ("Seven (Se7en) (1995)", ("Seven (Se7en)", 1995)),
])
def test_normalise_title(raw, expected):
    assert normalise_title(raw) == expected


# --- small data sets written by the tests ------------------------------------------------

def write_csv(folder, interactions, items, header=("user,item,timestamp", "item,title")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text(
        header[0] + "\n" + "".join(f"{u},{i},{t}\n" for u, i, t in interactions))
    (folder / "items.csv").write_text(
        header[1] + "\n" + "".join(f"{i},{title}\n" for i, title in items))
    return folder


def small_dataset(n_users=12, n_items=40, per_user=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        times = rng.integers(0, 1_000, size=per_user)
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, times, strict=True)]
    titles = [(f"i{i}", f"Item number {i}") for i in range(n_items)]
    return rows, titles


SMALL = DataSettings(candidates=5, history=4, min_history=2, split=(0.5, 0.25, 0.25))


def test_csv_round_trip(tmp_path):
    rows, titles = small_dataset()
    folder = write_csv(tmp_path / "mine", rows, titles)
    data, _ = prepare_data("csv", {"data_dir": folder}, SMALL, home=tmp_path / "home")
    counts = data.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (12, 40, 96)
    for u, raw_user in enumerate(data.raw_user_ids):
        mine = sorted((t, i) for uu, i, t in rows if uu == raw_user)  # ties: none here
        assert [data.raw_item_ids[i] for i in data.sequences[u]] == [i for _, i in mine]
    assert {data.raw_item_ids[i]: data.titles[i] for i in range(1, 41)} == dict(titles)
    _check_candidates(data, "test", data.splits["test"].candidates)


def test_csv_ties_keep_file_order_and_options(tmp_path):
    folder = tmp_path / "semi"
    folder.mkdir()
    (folder / "events.txt").write_text(
        "who;what;when\n" + "".join(f"a;i{i};5\n" for i in (3, 1, 2, 0)) +
        "".join(f"b;i{i};{i}\n" for i in range(4)) + "".join(f"c;i{i};{9 - i}\n" for i in range(4))
        + "".join(f"d;i{i};2020-01-0{i + 1}\n" for i in range(4)))
    (folder / "things.txt").write_text("what;name\n" + "".join(f"i{i};T{i}\n" for i in range(30)))
    options = {"data_dir": folder, "interactions": "events.txt", "items": "things.txt",
               "user_col": "who", "item_col": "what", "time_col": "when", "title_col": "name",
               "delimiter": ";"}
    settings = DataSettings(candidates=3, min_history=1, split=(0.5, 0.25, 0.25))
    data, _ = prepare_data("csv", options, settings, home=tmp_path / "home")
    seqs = {data.raw_user_ids[u]: [data.raw_item_ids[i] for i in s]
            for u, s in enumerate(data.sequences)}
    assert seqs["a"] == ["i3", "i1", "i2", "i0"]  # equal timestamps: file order
    assert seqs["c"] == ["i3", "i2", "i1", "i0"] and seqs["d"] == ["i0", "i1", "i2", "i3"]


def test_grouplens_ml100k_folder(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    rows, _ = small_dataset(n_items=30)
    (folder / "u.data").write_text("".join(f"{u[1:]}\t{int(i[1:]) + 1}\t4\t{t}\n"
                                           for u, i, t in rows))
    flags = "|".join("0" * 19)
    titles = [f"Cité des enfants perdus, La ({1990 + i % 9})" if i == 1 else f"Film {i} (1994)"
              for i in range(1, 31)]
    (folder / "u.item").write_bytes("".join(f"{i}|{t}|01-Jan-1994||http://x|{flags}\n"
                                            for i, t in enumerate(titles, 1)).encode("latin-1"))
    data, _ = prepare_data("ml-100k", {"data_dir": folder}, SMALL, home=tmp_path / "home")
    assert data.manifest["counts"]["items"] == 30
    assert data.titles[1] == "La Cité des enfants perdus" and data.years[1] == 1991


def test_ml1m_folder(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    rows, _ = small_dataset(n_items=30)
    (folder / "ratings.dat").write_text("".join(f"{u[1:]}::{int(i[1:]) + 1}::5::{t}\n"
                                                for u, i, t in rows))
    (folder / "movies.dat").write_text("".join(f"{i}::Movie {i}, The (2000)::Drama\n"
                                               for i in range(1, 31)), encoding="latin-1")
    data, _ = prepare_data("ml-1m", {"data_dir": folder}, SMALL, home=tmp_path / "home")
    assert data.manifest["counts"]["interactions"] == 96 and data.titles[3] == "The Movie 3"


def test_recbole_atomic_files(tmp_path):
    folder = tmp_path / "mini"
    folder.mkdir()
    rows, titles = small_dataset()
    (folder / "mini.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" +
                                       "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows))
    (folder / "mini.item").write_text("item_id:token\ttrack_name:token_seq\n" +
                                      "".join(f"{i}\t{t}\n" for i, t in titles))
    data, _ = prepare_data("recbole", {"data_dir": folder}, SMALL, home=tmp_path / "home")
    assert data.manifest["counts"]["interactions"] == 96
    assert data.titles[data.raw_item_ids.index("i7")] == "Item number 7"


# --- bad input: one clear sentence, or a counted skip -------------------------------------

def prepare_csv(tmp_path, rows, titles, settings=SMALL, **write):
    folder = write_csv(tmp_path / "bad", rows, titles, **write)
    return prepare_data("csv", {"data_dir": folder}, settings, home=tmp_path / "home")[0]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"Interactions file '.*/interactions.csv' does not exist"):
        prepare_data("csv", {"data_dir": tmp_path / "nowhere"}, home=tmp_path)


def test_line_with_wrong_number_of_fields(tmp_path):
    rows, titles = small_dataset()
    folder = write_csv(tmp_path / "d", rows, titles)
    path = folder / "interactions.csv"
    path.write_text(path.read_text() + "u1,i3\n")
    with pytest.raises(DataError, match=r"interactions.csv:98: expected 3 fields .* found 2"):
        prepare_data("csv", {"data_dir": folder}, SMALL, home=tmp_path)


def test_malformed_timestamp(tmp_path):
    rows, titles = small_dataset()
    rows[4] = ("u0", "i1", "yesterday")
    with pytest.raises(DataError, match=r"interactions.csv:6: timestamp 'yesterday'"):
        prepare_csv(tmp_path, rows, titles)


def test_missing_column(tmp_path):
    rows, titles = small_dataset()
    with pytest.raises(DataError, match=r"no timestamp column in the header \['user', 'item', "
                                        r"'when'\]; name it with --data-option time_col=NAME"):
        prepare_csv(tmp_path, rows, titles, header=("user,item,when", "item,title"))


def test_unknown_item_and_untitled_item_are_counted(tmp_path):
    rows, titles = small_dataset()
    rows.append(("u0", "ghost", 5))
    untitled = titles[0][0]
    titles[0] = (untitled, "")
    data = prepare_csv(tmp_path, rows, titles)
    skipped = data.manifest["skipped"]
    assert skipped["interactions with an item missing from the items file"] == 1
    assert skipped["items without a title"] == 1
    n_untitled = sum(i == untitled for _, i, _ in rows)
    assert skipped.get("interactions with an untitled item", 0) == n_untitled
    assert data.manifest["counts"]["interactions"] == len(rows) - 1 - n_untitled
    assert untitled not in data.raw_item_ids


def test_duplicate_item_line(tmp_path):
    rows, titles = small_dataset()
    titles.append(titles[3])
    with pytest.raises(DataError, match=r"items.csv:42: item 'i3' is listed twice"):
        prepare_csv(tmp_path, rows, titles)


def test_too_few_items_for_negatives(tmp_path):
    rows, titles = small_dataset(n_items=10)
    with pytest.raises(DataError, match=r"leaving 2 to draw 4 negatives from; lower candidates"):
        prepare_csv(tmp_path, rows, titles)


def test_short_histories_are_counted(tmp_path):
    rows, titles = small_dataset()
    rows += [("short1", "i1", 1), ("short1", "i2", 2), ("short2", "i3", 1)]
    data = prepare_csv(tmp_path, rows, titles)
    assert data.manifest["skipped"] == {"users with fewer than 3 interactions": 2}
    assert data.manifest["counts"]["users"] == 14
    used = sum(data.manifest["counts"][f"{s}_users"] for s in ("train", "valid", "test"))
    assert used == 12


def test_items_and_interactions_that_do_not_match(tmp_path):
    rows, _ = small_dataset()
    with pytest.raises(DataError, match="No usable interactions"):
        prepare_csv(tmp_path, rows, [("x1", "X")])


def test_bad_settings():
    with pytest.raises(Exception, match="split=.* must be three positive shares"):
        DataSettings(split=(0.5, 0.5, 0.5))
    with pytest.raises(Exception, match="min_history=11 exceeds history=10"):
        DataSettings(min_history=11)


# --- CLI ---------------------------------------------------------------------------------

def test_cli_data_info_json_and_table(tmp_path):
    rows, titles = small_dataset()
    folder = write_csv(tmp_path / "mine", rows, titles)
    args = ["--dataset", "csv", "--data-dir", str(folder), "--candidates", "5", "--history", "4",
            "--min-history", "2", "--split", "0.5,0.25,0.25"]
    runner = CliRunner()
    first = runner.invoke(cli, ["data", "prepare", *args, "--json"])
    assert first.exit_code == 0, first.output
    info = json.loads(first.output)
    assert info["counts"]["interactions"] == 96 and info["reused"] is False
    second = runner.invoke(cli, ["data", "info", *args], env={"COLUMNS": "200"})
    assert second.exit_code == 0 and "reused from cache" in second.output
    assert info["hash"][:16] in second.output


def test_cli_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["data", "info", "--dataset", "csv", "--data-dir",
                                      str(tmp_path), "--data-option", "colour=red"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: The dataset 'csv' has no option 'colour'")
    assert "Traceback" not in result.output
