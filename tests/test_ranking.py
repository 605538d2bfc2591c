"""Scoring item rankers chunk by chunk (never a samples x items array) gives what one dense
pass over the whole split gives: candidate scores, ranks among the candidates and over the
catalogue, shortlists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import cycle_data

from llara_kit.encoders import ranking, shortlists
from llara_kit.encoders.pretrain import build_encoder
from llara_kit.encoders.ranking import (
    ContentScorer,
    candidate_scores,
    popularity_scorer,
    split_ranks,
)
from llara_kit.metrics import target_ranks


def sorted_ranks(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The definition: each target's place in a stable sort, best first (NaN last)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.argmax(order == positions[:, None], axis=1)


def test_target_ranks_are_a_stable_sorts_places_without_sorting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(500, 9)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.1] = np.nan
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    positions = rng.integers(0, 9, size=500)
    assert np.array_equal(target_ranks(scores, positions), sorted_ranks(scores, positions))


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Cycle data, a SASRec of random weights and the dense scores of every test sample."""
    data = cycle_data(tmp_path_factory.mktemp("ranking"))
    torch.manual_seed(0)
    encoder = build_encoder("sasrec", data, {"hidden_size": 16}).eval()
    s = data.splits["test"]
    with torch.no_grad():
        dense = encoder(torch.from_numpy(s.history), torch.from_numpy(s.lengths)).numpy()
    return data, encoder, dense  # dense: (n, n_items + 1)


@pytest.fixture
def small_chunks(scored, monkeypatch):
    """Chunks of 3 samples."""
    monkeypatch.setattr(ranking, "CHUNK_CELLS", 3 * (scored[0].n_items + 1))
    assert len(scored[0].splits["test"]) > 3


def test_chunked_scores_and_ranks_equal_the_dense_pass(scored, small_chunks):
    data, encoder, dense = scored
    s = data.splits["test"]
    listed = np.take_along_axis(dense, s.candidates, axis=1)
    # from the listed items' embeddings: the same dot products summed in another order
    np.testing.assert_allclose(candidate_scores(encoder, data, "test", s.candidates), listed,
                               atol=1e-5)
    sets = np.stack([s.candidates, s.candidates[:, ::-1]])  # (2, n, C): two orders
    np.testing.assert_allclose(candidate_scores(encoder, data, "test", sets),
                               np.stack([listed, listed[:, ::-1]]), atol=1e-5)
    among_candidates, among_all = split_ranks(encoder, data, "test")
    assert np.array_equal(among_candidates, sorted_ranks(listed, s.target_positions()))
    assert np.array_equal(among_all, sorted_ranks(dense[:, 1:], s.targets - 1))
    popular = split_ranks(popularity_scorer(data), data, "test")[1]  # ties: lower id first
    counts = np.bincount(data.training_interactions(), minlength=data.n_items + 1)[1:]
    assert np.array_equal(popular, sorted_ranks(np.tile(counts, (len(s), 1)).astype(float),
                                                s.targets - 1))


def test_chunked_shortlists_equal_whole_ones(scored, monkeypatch):
    data, encoder, _ = scored
    whole = shortlists.shortlists(encoder, data, "test", 5)
    monkeypatch.setattr(ranking, "CHUNK_CELLS", 2 * (data.n_items + 1))
    chunked = shortlists.shortlists(encoder, data, "test", 5)
    assert np.array_equal(chunked.items, whole.items)
    assert np.array_equal(chunked.target_rank, whole.target_rank)


def test_candidate_scores_read_only_the_listed_items(scored, monkeypatch):
    """An encoder's candidate scores come from the candidates' own embeddings: they equal the
    dense pass's columns with the encoder unable to score every item."""
    data, encoder, dense = scored
    s = data.splits["test"]
    listed = np.take_along_axis(dense, s.candidates, axis=1)

    def every_item(*_):
        raise AssertionError("scored every item to keep a few")

    monkeypatch.setattr(type(encoder), "forward", every_item)
    np.testing.assert_allclose(candidate_scores(encoder, data, "test", s.candidates), listed,
                               atol=1e-5)
    counts = np.bincount(data.training_interactions(), minlength=data.n_items + 1)
    assert np.array_equal(candidate_scores(popularity_scorer(data), data, "test", s.candidates),
                          counts[s.candidates])  # a scorer of every item: its columns
    content = ContentScorer(np.random.default_rng(0).normal(size=(data.n_items + 1, 8)))
    every = content(torch.from_numpy(s.history), torch.from_numpy(s.lengths)).numpy()
    np.testing.assert_allclose(candidate_scores(content, data, "test", s.candidates),
                               np.take_along_axis(every, s.candidates, axis=1), atol=1e-5)
