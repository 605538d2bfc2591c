"""Candidate layouts: seeded orders, stored negative draws, and the metrics over them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CYCLE_SETTINGS, write_cycle_files

from llara_kit.data import prepare_data
from llara_kit.encoders.pretrain import build_encoder
from llara_kit.encoders.ranking import candidate_scores
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.layouts import layout_summary, layouts


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return write_cycle_files(root / "cycle"), root / "home"


def _prepare(cycle, draws: int = 1):
    folder, home = cycle
    settings = CYCLE_SETTINGS.__class__(**{**CYCLE_SETTINGS.to_dict(), "draws": draws})
    return prepare_data("csv", {"data_dir": folder}, settings, home=home)[0]


def test_orders_are_seeded_permutations_of_the_stored_lists(cycle):
    test = _prepare(cycle).splits["test"]
    views = layouts(test, permutations=4, seed=0)
    assert [(v.draw, v.order) for v in views] == [(0, k) for k in range(4)]
    assert np.array_equal(views[0].candidates, test.candidates)  # the stored order first
    for v in views[1:]:
        assert np.array_equal(np.sort(v.candidates, axis=1), np.sort(test.candidates, axis=1))
        assert not np.array_equal(v.candidates, test.candidates)
        assert np.array_equal(v.candidates[np.arange(len(test)), v.target_positions(test.targets)],
                              test.targets)
    again = layouts(test, permutations=4, seed=0)
    assert all(np.array_equal(a.candidates, b.candidates)
               for a, b in zip(views, again, strict=True))
    with pytest.raises(LlaraKitError, match="--permutations 0 must be at least 1"):
        layouts(test, permutations=0)


def test_draws_keep_the_first_draw_and_the_data_hash(cycle):
    one, three = _prepare(cycle), _prepare(cycle, draws=3)
    assert three.path != one.path and three.hash == one.hash
    for name in ("valid", "test"):
        draws = three.splits[name].candidate_draws()
        assert len(draws) == 3 and np.array_equal(draws[0], one.splits[name].candidates)
        assert not np.array_equal(draws[1], draws[2])
        s = three.splits[name]
        for d in draws:  # target once, negatives the user never saw
            assert ((d == s.targets[:, None]).sum(axis=1) == 1).all()
            for i, u in enumerate(s.users):
                negatives = set(d[i]) - {s.targets[i]}
                assert len(negatives) == d.shape[1] - 1
                assert not negatives & set(three.sequences[u].tolist())
    assert len(layouts(three.splits["test"], permutations=2)) == 6
    with pytest.raises(LlaraKitError, match="draws=0 must be a positive integer"):
        _prepare(cycle, draws=0)


def test_summary_finds_a_ranker_that_always_picks_the_first_position():
    rng = np.random.default_rng(0)
    L, n, C = 4, 200, 5
    target_pos = rng.integers(0, C, size=(L, n))
    scores = np.tile(-np.arange(C, dtype=float), (L, n, 1))  # position 0 always on top
    out = layout_summary(scores, target_pos, np.zeros(L, dtype=int))
    assert out["by_position"]["top1_share"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert out["by_position"]["HR@1"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert sum(out["by_position"]["samples"]) == L * n
    assert out["position_bias"]["HR@1_spread"] == 1.0 and out["position_bias"]["top1_p"] < 1e-6
    assert out["metrics"]["HR@1"]["value"] == pytest.approx((target_pos == 0).mean())
    # a ranker that finds the target wherever it stands shows no position effect
    perfect = np.zeros((L, n, C))
    np.put_along_axis(perfect, target_pos[..., None], 1.0, axis=2)
    fair = layout_summary(perfect, target_pos, np.array([0, 0, 1, 1]))
    assert fair["position_bias"]["HR@1_spread"] == 0.0 and fair["metrics"]["HR@1"]["value"] == 1
    assert fair["spread"]["draws"]["HR@1"] == [1.0, 1.0] and fair["spread"]["orders"]["range"] == 0


def test_an_encoder_is_unaffected_by_the_candidate_order(cycle):
    data = _prepare(cycle, draws=2)
    torch.manual_seed(0)
    encoder = build_encoder("sasrec", data, {"hidden_size": 16}).eval()
    test = data.splits["test"]
    views = layouts(test, permutations=5, seed=3)
    out = layout_summary(
        candidate_scores(encoder, data, "test", np.stack([v.candidates for v in views])),
        np.stack([v.target_positions(test.targets) for v in views]),
        np.array([v.draw for v in views]))
    ranks = out["ranks"].reshape(2, 5, -1)  # (draws, orders, n)
    assert (ranks == ranks[:, :1]).all()  # every order of a draw ranks alike
    assert out["spread"]["orders"]["range"] == 0.0
