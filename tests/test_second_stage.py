"""The LLM as a second stage: shortlists over the whole catalogue, training lists mined by
cross-fitted encoders, the residual objective, whole-catalogue evaluation, buckets and the
fallback of ``recommend`` (tiny Llama, cycle data)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import cycle_data, tiny_config, train_in_memory
from safetensors.torch import load_file

from llara_kit.cli import cli
from llara_kit.config import TrainConfig
from llara_kit.encoders.pretrain import build_encoder
from llara_kit.encoders.shortlists import MISSED, list_ranks, shortlists
from llara_kit.errors import LlaraKitError, UnknownComponentError
from llara_kit.evaluation.buckets import bucket_differences, sample_buckets
from llara_kit.evaluation.evaluate import split_prompts
from llara_kit.evaluation.recommend import Recommender
from llara_kit.metrics import per_sample
from llara_kit.run import load_run
from llara_kit.run_folder import load_metrics, read_predictions, read_summary
from llara_kit.training.lists import user_folds
from llara_kit.training.train import Trainer, check_components

pytestmark = pytest.mark.gpu  # run first by the GPU check, on LLARA_KIT_TEST_DEVICE


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """Residual objective, mixed lists, two cross-fitting folds: the run folder, and the
    objective's weights when training began and ended."""
    root = tmp_path_factory.mktemp("second")
    start = {}
    cfg = tiny_config(root, negatives="mixed", cross_fit=2, objective_options={"residual": True})
    run = train_in_memory(cfg, root / "run", before=lambda r: start.update(weights(r)))
    return root / "run", start, weights(run)


def weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.objective.state_dict().items()}


@pytest.fixture(scope="module")
def second_dir(second_run):
    return second_run[0]


def test_seen_before_is_each_samples_past(tmp_path):
    data = cycle_data(tmp_path)
    for split in ("train", "valid", "test"):
        s = data.splits[split]
        seen = data.seen_before(split)
        assert len(seen) == len(s)
        for i in range(len(s)):
            window = seen[i][-s.lengths[i]:]
            assert window.tolist() == s.history_of(i)
            assert data.sequences[s.users[i]][len(seen[i])] == s.targets[i]


def test_shortlists_mask_the_past_and_rank_over_the_catalogue(tmp_path):
    data = cycle_data(tmp_path)
    torch.manual_seed(0)
    encoder = build_encoder("sasrec", data, {"hidden_size": 8}).eval()
    found = shortlists(encoder, data, "test", 5)
    s, seen = data.splits["test"], data.seen_before("test")
    with torch.no_grad():
        full = encoder(torch.from_numpy(s.history), torch.from_numpy(s.lengths)).numpy()
    for i in range(len(s)):
        assert not set(found.items[i]) & set(seen[i].tolist()) and 0 not in found.items[i]
        unseen = np.setdiff1d(np.arange(1, data.n_items + 1), seen[i])
        best = unseen[np.argsort(-full[i, unseen], kind="stable")]
        assert found.items[i].tolist() == best[:5].tolist()  # brute force, best first
        assert np.allclose(found.scores[i], full[i, best[:5]])
        expected = np.flatnonzero(best == s.targets[i])
        assert found.target_rank[i] == (expected[0] if len(expected) else MISSED)
    assert (found.retrieved == (found.target_rank < 5)).all()


def test_list_ranks_count_a_missing_target_as_a_miss():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    items = np.array([[7, 8, 9], [1, 2, 3]])
    ranks = list_ranks(scores, items, np.array([9, 4]))
    assert ranks[0] == 1 and ranks[1] == MISSED
    assert per_sample(ranks, "NDCG@10")[1] == 0 and per_sample(ranks, "MRR")[1] == 0
    assert per_sample(ranks, "Recall@2").tolist() == [1.0, 0.0]


def test_cross_fitting_folds_cut_the_users(tmp_path):
    data = cycle_data(tmp_path)
    fold = user_folds(data, 3, seed=0)
    users = data.splits["train"].users
    assert set(fold) == {0, 1, 2}
    for u in np.unique(users):  # every sample of a user sits in one fold
        assert len(set(fold[users == u])) == 1
    with pytest.raises(LlaraKitError, match="cross_fit=1"):
        TrainConfig(cross_fit=1)
    with pytest.raises(LlaraKitError, match="negatives='hard': use random, shortlist or mixed"):
        TrainConfig(negatives="hard")
    with pytest.raises(LlaraKitError, match="cross_fit=1000 folds need at least 1000 train"):
        user_folds(data, 1000, seed=0)
    with pytest.raises(UnknownComponentError):  # before any slow work
        check_components(TrainConfig(negatives="mixed", negatives_schedule="linaer"))


def test_training_lists_come_from_the_out_of_fold_encoder(second_dir):
    cfg = load_run(second_dir).config
    trainer = Trainer(cfg, second_dir.parent / "probe", show_progress=False)
    lists, train = trainer.lists, trainer.data.splits["train"]
    assert len(lists.scorers) == 2
    main = trainer.model.encoder
    for k, scorer in enumerate(lists.scorers):  # not the run's encoder: pre-trained apart
        assert not torch.equal(scorer.item_embedding.weight, main.item_embedding.weight)
        rows = np.flatnonzero(lists.fold == k)
        own = shortlists(scorer, trainer.data, "train", cfg.candidates, rows[:3])
        assert (lists.mined.items[rows[:3]] == own.items).all()
    idx = np.arange(6)
    cands, used = lists.candidates(idx, trainer.data.train_candidates(0)[idx],
                                   np.ones(6, bool), train.targets[idx],
                                   np.random.default_rng(0))
    for r, i in enumerate(idx):  # a shortlist where it holds the target, else the random list
        assert used[r] == bool(lists.mined.retrieved[i])
        assert train.targets[i] in cands[r]
        if used[r]:
            assert sorted(cands[r]) == sorted(lists.mined.items[i])
    base = lists.base_scores(trainer.data, idx, cands)
    with torch.no_grad():
        k = lists.fold[0]
        full = lists.scorers[k](torch.from_numpy(train.history[:1]),
                                torch.from_numpy(train.lengths[:1]))
    assert np.allclose(base[0], full[0, cands[0]].numpy(), atol=1e-5)
    summary = read_summary(second_dir)
    assert 0 <= summary["train_shortlist_recall"] <= 1 and "train_lists_scorer_HR@1" in summary


def test_missing_targets_can_be_injected(second_dir):
    cfg = load_run(second_dir).config
    trainer = Trainer(replace(cfg, missing_target="inject"), second_dir.parent / "probe2",
                      show_progress=False)
    lists, train = trainer.lists, trainer.data.splits["train"]
    missing = np.flatnonzero(~lists.mined.retrieved)[:3]
    assert len(missing)
    cands, used = lists.candidates(missing, trainer.data.train_candidates(0)[missing],
                                   np.ones(len(missing), bool), train.targets[missing],
                                   np.random.default_rng(0))
    assert used.all() and all(train.targets[i] in cands[r] for r, i in enumerate(missing))


def test_an_untrained_residual_model_ranks_as_its_encoder(second_dir):
    run = load_run(second_dir)
    objective = run.model.objective
    assert objective.residual and objective.alpha.requires_grad
    with torch.no_grad():  # back to the start: head at zero, alpha at one
        objective.head.weight.zero_()
        objective.head.bias.zero_()
        objective.alpha.fill_(1.0)
    prompts, cands, _ = split_prompts(run, "test", hybrid=True, limit=3)
    titles = [[run.data.titles[c] for c in row] for row in cands]
    base = torch.randn(3, cands.shape[1])
    scores = objective.score(run.model, prompts, titles, base)
    assert torch.allclose(scores, base)
    # without given scores, the model computes its encoder's (hybrid rows)
    s = run.data.splits["test"]
    with torch.no_grad():
        full = run.model.encoder(torch.from_numpy(s.history[:3]),
                                 torch.from_numpy(s.lengths[:3]))
    own = objective.score(run.model, prompts, titles)
    assert torch.allclose(own, full.gather(1, torch.from_numpy(cands)), atol=1e-4)
    with pytest.raises(LlaraKitError, match="residual='yes'"):
        type(objective)(8, residual="yes")


def test_residual_weights_train_save_and_reload(second_run):
    folder, start, end = second_run
    assert set(start) == {"head.weight", "head.bias", "alpha"}
    assert start["head.weight"].abs().sum() == 0 and start["alpha"] == 1  # as documented
    assert end["head.weight"].abs().sum() > 0 and end["alpha"] != 1  # both trained
    assert load_file(folder / "objective.safetensors").keys() == end.keys()
    loaded = load_run(folder).model.objective.state_dict()
    assert loaded.keys() == end.keys() and all(torch.equal(loaded[k], end[k]) for k in end)


def test_whole_catalogue_evaluation_and_comparison(second_dir):
    result = CliRunner().invoke(cli, ["evaluate", str(second_dir), "--candidates", "retrieved",
                                      "--shortlist", "5", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    run_metrics = out["score-retrieved"]
    assert {"HR@1", "NDCG@10", "Recall@10", "Recall@5", "MRR", "retrieved"} <= set(run_metrics)
    assert run_metrics["Recall@5"]["value"] == run_metrics["retrieved"]["value"]
    stored = load_metrics(second_dir)
    assert "fused-retrieved" in stored["test"] and "score-retrieved" in stored["valid"]
    versus = stored["test"]["score-retrieved"]["versus_encoder"]
    preds = read_predictions(second_dir, "test", "score-retrieved")
    run = load_run(second_dir)
    best = shortlists(run.model.encoder, run.data, "test", 5).items[:, 0]  # encoder's top-1
    differs = np.array([p["ranking"][0] for p in preds]) != best
    assert versus["top1_differs"] == pytest.approx(differs.mean(), abs=1e-4)
    targets = np.array([p["target"] for p in preds])
    assert versus["encoder_right"] == int((best[differs] == targets[differs]).sum())
    result = CliRunner().invoke(cli, ["compare", str(second_dir), "--candidates", "retrieved",
                                      "--against", "sasrec", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    encoder, llm = rows["sasrec alone"], next(v for k, v in rows.items()
                                              if k.startswith("LLaRA") and "fused" not in k)
    # the run re-ranks exactly the encoder's top 5: the same items are found
    assert encoder["Recall@5"]["value"] == llm["Recall@5"]["value"]
    assert encoder["retrieved"]["value"] == llm["retrieved"]["value"]
    assert llm["ΔNDCG@10"]["value"] == pytest.approx(
        llm["NDCG@10"]["value"] - encoder["NDCG@10"]["value"])
    result = CliRunner().invoke(cli, ["compare", str(second_dir), "--candidates", "retrieved",
                                      "--against", "sasrec", "--buckets", "--intervals"],
                                env={"COLUMNS": "60"})  # off a terminal: no width applies
    assert result.exit_code == 0, result.output
    assert "by target popularity" in result.output and "by history" in result.output
    lines = result.output.splitlines()
    headers = [x.split() for x in lines if x.lstrip().startswith("bucket")]
    assert headers == [["bucket", "n", "method", "ΔHR@1", "ΔNDCG@10"]] * 2, lines
    assert "…" not in result.output and max(map(len, lines)) > 60  # every cell, whole
    bad = CliRunner().invoke(cli, ["evaluate", str(second_dir), "--candidates", "retrieved",
                                   "--permutations", "2"])
    assert bad.exit_code == 1 and "--candidates retrieved ranks" in bad.output


def test_buckets_partition_the_samples(tmp_path):
    data = cycle_data(tmp_path)
    buckets = sample_buckets(data, "test")
    n = len(data.splits["test"])
    rng = np.random.default_rng(0)
    values = {"a": rng.random(n), "b": rng.random(n)}
    for order, labels in buckets.values():
        assert len(labels) == n and set(labels) <= set(order)
        table = bucket_differences(values, "b", (order, labels))
        assert sum(cell["samples"] for cell in table.values()) == n
        for bucket, cell in table.items():
            where = np.array(labels) == bucket
            assert cell["a"]["value"] == pytest.approx((values["a"] - values["b"])[where].mean())


def test_recommend_uses_the_second_stage_chosen_on_valid(second_dir):
    CliRunner().invoke(cli, ["evaluate", str(second_dir), "--candidates", "retrieved",
                             "--shortlist", "5"])
    lam = load_metrics(second_dir)["test"]["fused-retrieved"]["lambda"]
    rec = Recommender.from_run(second_dir)
    assert rec.fusion == lam
    history = ["Item 3", "Item 4", "Item 5"]
    recs = rec.recommend(history, top_k=4)
    assert not {"i3", "i4", "i5"} & {r.item for r in recs}
    rec.fusion = "inf"  # the fallback: the encoder's own order
    encoder_order = rec.recommend(history, top_k=4)
    scores = rec.encoder_scores([[rec.item_id(h) for h in history]])[0]
    assert [r.score for r in encoder_order] == pytest.approx(
        [float(scores[rec.item_id(r.item)]) for r in encoder_order])
    assert [r.score for r in encoder_order] == sorted((r.score for r in encoder_order),
                                                      reverse=True)
    result = CliRunner().invoke(cli, ["recommend", str(second_dir), "--history", "Item 3"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "ranked by" in result.output
    assert math.isinf(float(lam)) == ("encoder's order" in result.output)
