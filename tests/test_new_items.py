"""New items: the held-out protocol, item attributes and texts, text-imputed embeddings, the
content baselines, cold candidates in the prompt, item dropout, and the new-item splits in
evaluate and compare (MovieLens-100K for the protocol; tiny Llama on cycle data for the
model)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import tiny_llm_folder, train_tiny, write_cycle_files

from llara_kit.cli import cli
from llara_kit.data import DataSettings, prepare_data
from llara_kit.data.settings import NEW_SPLITS
from llara_kit.encoders.imputation import impute_embeddings, stretched, with_imputed
from llara_kit.encoders.ranking import ContentScorer, attribute_vectors
from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.buckets import sample_buckets
from llara_kit.evaluation.recommend import Recommender
from llara_kit.model.batching import collate
from llara_kit.model.item_text import describe, item_texts
from llara_kit.model.llm import load_tokenizer
from llara_kit.model.new_items import ItemSignals
from llara_kit.run import load_run, run_encoder
from llara_kit.run_folder import load_metrics, read_config
from llara_kit.training.train import Trainer

NEW = DataSettings(protocol="loo", new_items=0.2)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    home = tmp_path_factory.mktemp("ml")
    return (prepare_data("ml-100k", {}, NEW, home=home)[0],
            prepare_data("ml-100k", {}, DataSettings(protocol="loo"), home=home)[0])


def test_no_new_item_reaches_what_trains(movielens):
    data, _ = movielens
    new = data.is_new
    assert new.sum() == round(0.2 * data.n_items)
    train = data.splits["train"]
    assert not new[train.targets].any() and not new[train.history].any()
    assert not new[data.training_interactions()].any()  # what the encoder's popularity counts
    assert not new[data.train_candidates(0)].any() and not new[data.train_candidates(1)].any()
    for split in ("valid", "test"):
        assert not new[data.splits[split].targets].any()
        assert not new[data.splits[split].history].any()  # histories lose their new items


def test_new_item_splits_hold_the_new_targets(movielens):
    data, warm = movielens
    for split in NEW_SPLITS:
        s = data.splits[split]
        assert len(s) > 100 and new_only(data, s.targets)
        assert not data.is_new[s.history].any() and (s.lengths >= 1).all()
        assert (s.candidates == s.targets[:, None]).sum(1).tolist() == [1] * len(s)
        seen = data.seen_before(split)
        for i in range(len(s)):  # never an item the user saw before
            assert not np.isin(np.delete(s.candidates[i], s.target_positions()[i]),
                               seen[i]).any()
            assert data.sequences[s.users[i]][len(seen[i])] == s.targets[i]
        if split.endswith("-only"):
            assert new_only(data, s.candidates)
        else:
            assert 0.1 < data.is_new[s.candidates].mean() < 0.5  # 19 random of all items
    # every loo user is in valid or valid-new, test or test-new
    for split in ("valid", "test"):
        users = np.concatenate([data.splits[split].users, data.splits[f"{split}-new"].users])
        assert sorted(users.tolist()) == list(range(warm.manifest["counts"]["users"]))
    counts = data.manifest["counts"]
    assert counts["new_items"] == data.is_new.sum()
    assert counts["test-new_samples"] == len(data.splits["test-new"])


def new_only(data, items):
    return bool(data.is_new[items].all())


def test_without_new_items_the_data_and_its_hash_are_unchanged(movielens):
    _, warm = movielens
    assert "new_items" not in warm.settings.to_dict()
    assert not warm.has_new_items and set(warm.splits) == {"train", "valid", "test"}
    # ML-100K loo's hash since negatives are drawn by rejection (docs/data.md): the new-item
    # option leaves data without new items as they were
    assert warm.hash.startswith("c6cdf6d454290c4c")


def test_latest_items_are_those_first_seen_last(tmp_path):
    folder = write_cycle_files(tmp_path / "cycle", n_items=60)
    data = prepare_data("csv", {"data_dir": folder},
                        DataSettings(history=5, candidates=5, new_items=0.2,
                                     new_items_by="latest"), home=tmp_path)[0]
    first = {}
    for seq in data.sequences:
        for t, item in enumerate(seq):
            first[item] = min(first.get(item, 99), t)  # timestamps are positions here
    newest = max(first[i] for i in np.flatnonzero(~data.is_new[1:]) + 1)
    assert all(first[i] >= newest for i in np.flatnonzero(data.is_new))


def test_bad_new_item_settings_say_what_to_do(tmp_path):
    with pytest.raises(LlaraKitError, match="new_items=1.5 must be a share"):
        DataSettings(new_items=1.5)
    with pytest.raises(LlaraKitError, match="Unknown new_items_by 'oldest'"):
        DataSettings(new_items=0.2, new_items_by="oldest")
    folder = write_cycle_files(tmp_path / "cycle")  # 30 items: 6 new, too few for 9 negatives
    with pytest.raises(LlaraKitError, match="among the new items; lower candidates or raise"):
        prepare_data("csv", {"data_dir": folder},
                     DataSettings(history=5, candidates=10, protocol="loo", new_items=0.2),
                     home=tmp_path)


def test_attributes_are_read_and_rendered(movielens, tmp_path):
    data, _ = movielens
    assert data.attributes[1] == ["Animation", "Children's", "Comedy"]
    folder = write_cycle_files(tmp_path / "cycle")
    (folder / "items.csv").write_text("item,title,tags\n" + "".join(
        f'i{i},Item {i},"a{i % 3}|b |a{i % 3}"\n' for i in range(30)))
    csv = prepare_data("csv", {"data_dir": folder, "attributes_col": "tags"},
                       DataSettings(history=5, candidates=5), home=tmp_path)[0]
    assert csv.attributes[1] in (["a0", "b"], ["a1", "b"], ["a2", "b"])  # split, blanks gone
    assert describe("Toy Story", 1995, ["Animation", "Comedy"]) == \
        "Toy Story (1995; Animation, Comedy)"
    assert describe("Heat", None, []) == "Heat"
    tokenizer = load_tokenizer(str(tiny_llm_folder()))
    texts = item_texts(data.titles, data.years, data.attributes, tokenizer, 3)
    assert texts[1] == "Toy Story (1995; Animation)"  # whole attributes while they fit
    assert item_texts(data.titles, data.years, data.attributes, tokenizer, 0)[1] == \
        "Toy Story (1995; Animation, Children's, Comedy)"


def test_imputation_is_out_of_fold_for_trained_items():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(201, 12)).astype(np.float32)
    table = (text @ rng.normal(size=(12, 4))).astype(np.float32)  # a linear map to learn
    trained = np.ones(201, dtype=bool)
    trained[0] = trained[150:] = False
    imputed = impute_embeddings(text, table, trained, seed=0)
    assert np.abs(imputed[150:] - table[150:]).max() < 0.05  # the map is recovered
    assert not np.allclose(imputed[1:150], table[1:150], atol=1e-6)  # out of fold: not itself
    assert np.abs(imputed[1:150] - table[1:150]).max() < 0.1
    wider = stretched(imputed, table, trained, 2.0)
    mean = table[trained].mean(0)
    assert np.allclose(wider[160] - mean, 2 * (imputed[160] - mean), atol=1e-5)
    with pytest.raises(LlaraKitError, match="Only 3 items have a training history"):
        impute_embeddings(text, table, np.arange(201) < 4, seed=0)


def test_content_scores_are_cosines_with_the_history_mean():
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    scorer = ContentScorer(vectors, centre=False)
    scores = scorer(torch.tensor([[1, 0], [1, 2]]), torch.tensor([1, 2]))
    assert scores[0, 1:].tolist() == pytest.approx([1.0, 0.0, 2 ** -0.5])
    assert scores[1, 1:].tolist() == pytest.approx([0.5, 0.5, 2 ** -0.5])
    assert scores[:, 0].isinf().all()
    genres = attribute_vectors([[], ["a"], ["a", "b"], ["b"]])
    assert genres.tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]


@pytest.fixture(scope="module")
def new_dir(tmp_path_factory):
    """The tiny Llama with new items held out, item dropout and the content base."""
    root = tmp_path_factory.mktemp("new")
    return train_tiny(root, "run", n_items=120, new_items=0.3, item_dropout=0.5, content_base=True,
                      objective_options={"residual": True})


def test_the_encoder_scores_new_items_by_their_imputed_embeddings(new_dir):
    run = load_run(new_dir)
    signals = ItemSignals.load(new_dir)
    new = run.data.is_new
    weight = run.model.encoder.item_embedding.weight.detach().numpy()
    assert np.allclose(weight[new], signals.imputed[new])
    trained = run_encoder(new_dir).item_embedding.weight.detach().numpy()  # as pre-trained
    assert np.allclose(weight[~new], trained[~new]) and not np.allclose(weight[new], trained[new])
    unchanged = with_imputed(run.model.encoder, signals.imputed, np.zeros_like(new))
    assert np.allclose(unchanged.item_embedding.weight.detach().numpy(), weight)


def test_cold_candidates_show_their_imputed_embedding_and_a_marker(new_dir):
    run = load_run(new_dir)
    model, data = run.model, run.data
    s = data.splits["test"]
    cands = s.candidates[:2]
    prompts = [run.template.render(data.item_texts, s.history_of(i), cands[i].tolist(), True)
               for i in range(2)]
    cold = np.zeros(cands.shape, dtype=bool)
    cold[0, 0] = True
    warm = collate(model, prompts, [None, None], base_scores=np.zeros(cands.shape),
                   cold=np.zeros_like(cold), content=np.zeros(cands.shape))
    marked = collate(model, prompts, [None, None], base_scores=np.zeros(cands.shape),
                     cold=cold, content=np.zeros(cands.shape))
    with torch.no_grad():
        a, b = model.behaviour_vectors(warm), model.behaviour_vectors(marked)
    changed = (a != b).any(1).nonzero().squeeze(1).tolist()
    first_candidate = int(marked.item_is_candidate.nonzero()[0])
    assert changed == [first_candidate]  # only the cold candidate's token
    projected = model.projector(torch.from_numpy(ItemSignals.load(new_dir).imputed)[
        marked.item_ids[first_candidate]]) + model.cold_marker.weight[:, 0]
    # the encoder's score (0 here) adds nothing to the user-conditioned token
    assert torch.allclose(b[first_candidate], projected, atol=1e-5)


def _text_only_step(model, batch, always: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """(loss, each trainable weight's gradient) of a training step on ``batch``."""
    model.train().always_project = always
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout
    loss = model(batch)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("user_signal", ["score", "product"])
def test_always_project_gives_every_trainable_weight_a_gradient_in_text_only_batches(
        new_dir, tmp_path, user_signal):
    """Under DeepSpeed a rank whose slice holds no hybrid sample must still call the
    projector (and the score direction, the cold marker) and give them gradients: the same
    loss, zeros where a text-only batch leaves them out."""
    if user_signal == "score":
        model, data, template = (run := load_run(new_dir)).model, run.data, run.template
    else:
        cfg = replace(read_config(new_dir), user_signal="product")
        run = Trainer(cfg, tmp_path / "run", show_progress=False).assembled
        model, data, template = run.model, run.data, run.template
    s = data.splits["test"]
    cands = s.candidates[:2]
    prompts = [template.render(data.item_texts, s.history_of(i), cands[i].tolist(), False)
               for i in range(2)]
    batch = collate(model, prompts, [None, None], target_pos=[0, 1],
                    base_scores=np.ones(cands.shape), cold=np.zeros(cands.shape, dtype=bool),
                    content=np.zeros(cands.shape))
    loss, grads = _text_only_step(model, batch, always=False)
    left_out = sorted(n.split(".")[0] for n, g in grads.items() if g is None)
    assert set(left_out) == {"projector", "score_direction", "cold_marker"} - (
        {"score_direction"} if user_signal == "product" else set())
    always_loss, always_grads = _text_only_step(model, batch, always=True)
    assert always_loss == loss
    assert all(g is not None for g in always_grads.values())
    for name, grad in always_grads.items():
        if grads[name] is None:
            assert not grad.any(), name
        else:
            assert torch.equal(grad, grads[name]), name


def test_a_bf16_backbone_feeds_the_fp32_head_without_autocast(new_dir):
    """DeepSpeed with its own bf16 mode off runs a bf16 backbone outside autocast: the score
    head (fp32, trained) reads its hidden states all the same."""
    run = load_run(new_dir)
    model, data = run.model, run.data
    s = data.splits["test"]
    prompts = [run.template.render(data.item_texts, s.history_of(i), s.candidates[i].tolist(),
                                   True) for i in range(2)]
    signals = dict(base_scores=torch.zeros(s.candidates[:2].shape),
                   cold=torch.zeros(s.candidates[:2].shape, dtype=torch.bool),
                   content=torch.zeros(s.candidates[:2].shape))
    fp32 = model.objective.score(model, prompts, [], **signals)
    model.llm.base_model.model.model.to(torch.bfloat16)  # the frozen decoder; LoRA stays fp32
    for param in model.llm.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    bf16 = model.objective.score(model, prompts, [], **signals)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, fp32, atol=0.1)


def test_item_dropout_shows_its_share_of_candidates_as_new(new_dir, tmp_path):
    cfg = replace(read_config(new_dir), max_train_samples=64, item_dropout=0.3)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    batches = [trainer.micro_batch(g, p_hybrid=1.0) for g in range(16)]
    cold = torch.cat([b.cold for b in batches])
    assert 0.2 < cold.float().mean() < 0.4  # the share asked for (no new item trains)
    model = trainer.model
    for b in batches[:4]:  # a cold candidate's base score is its imputed embedding's
        state = model.encoder.encode(b.history, b.lengths)  # (B, d)
        ids = b.item_ids[b.item_is_candidate].view(b.cold.shape)  # (B, C)
        imputed = torch.einsum("bcd,bd->bc", model.imputed[ids], state)
        assert torch.allclose(b.base_scores[b.cold], imputed[b.cold], atol=1e-4)
    # the content base starts at its fit on training lists, not at 0
    assert model.content_weights.weight.abs().sum() > 0
    assert model.objective.alpha.item() != 1.0


def test_new_item_splits_in_evaluate_and_compare(new_dir):
    runner = CliRunner()
    for split in ("test-new", "test-new-only"):
        result = runner.invoke(cli, ["evaluate", str(new_dir), "--split", split, "--json"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["evaluate", str(new_dir), "--split", "test-new", "--zero-shot",
                                 "--limit", "3"])
    assert result.exit_code == 0, result.output
    stored = load_metrics(new_dir)
    assert "fused" in stored["test-new"] and "score" in stored["valid-new"]
    assert "zero-shot-score" in stored["test-new"]
    result = runner.invoke(cli, ["compare", str(new_dir), "--split", "test-new",
                                 "--against", "sasrec alone", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {"popularity", "sasrec alone", "sasrec, new items imputed from text",
            "frozen LLM text similarity"} <= set(rows)
    assert rows["popularity"]["HR@1"]["value"] == 0.0  # a new item has no count
    bad = runner.invoke(cli, ["evaluate", str(new_dir), "--split", "valid-new-onl"])
    assert bad.exit_code == 2


def test_new_item_splits_need_new_item_data(tmp_path):
    run = train_tiny(tmp_path, "plain")
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--split", "test-new"])
    assert result.exit_code == 1
    assert "need data prepared with --new-items" in result.output


def test_new_targets_have_their_own_popularity_bucket(movielens):
    data, _ = movielens
    for split, expected in (("test-new", {"new items"}), ("test", None)):
        order, labels = sample_buckets(data, split)["target popularity"]
        assert order[0] == "new items"
        if expected:
            assert set(labels) == expected
        else:
            assert "new items" not in labels and "0-4 interactions" in labels


def test_recommend_marks_new_items_and_can_rank_them(new_dir):
    rec = Recommender.from_run(new_dir)
    data = rec.run.data
    new, warm = np.flatnonzero(data.is_new)[:2], np.flatnonzero(~data.is_new[1:])[:4] + 1
    history = [data.titles[i] for i in warm[:3]]
    out = rec.recommend(history, [data.raw_item_ids[i] for i in [*new, warm[3]]], top_k=3)
    assert sorted(r.new for r in out) == [False, True, True]
    assert all(r.new == bool(data.is_new[rec.item_id(r.item)]) for r in out)
    # the shortlist over the catalogue scores new items by their imputed embeddings
    ids = [rec.item_id(h) for h in history]
    encoder = rec.run.model.encoder
    with torch.no_grad():
        state = encoder.encode(torch.tensor([ids]), torch.tensor([len(ids)]))[0]
    imputed = torch.from_numpy(ItemSignals.load(new_dir).imputed[new]) @ state
    assert torch.allclose(rec.encoder_scores([ids])[0][new], imputed, atol=1e-5)


@pytest.mark.slow
def test_new_items_end_to_end_with_real_smollm2(tmp_path):
    """The real SmolLM2-135M through the CLI on data with attributes and new items: train
    with item dropout, the content base and attributes in the prompt; evaluate and compare
    on the new-item split."""
    folder = write_cycle_files(tmp_path / "cycle", n_items=120)
    genres = ("Comedy", "Drama", "Horror", "Western")
    (folder / "items.csv").write_text("item,title,genres\n" + "".join(
        f"i{i},Item {i},{genres[i % 4]}|{genres[(i // 4) % 4]}\n" for i in range(120)))
    out = tmp_path / "run"
    args = ["train", "--dataset", "csv", "--data-dir", str(folder), "--data-option",
            "attributes_col=genres", "--history", "5", "--candidates", "10", "--protocol",
            "loo", "--new-items", "0.3", "--template", "item", "--item-text", "attributes",
            "--item-dropout", "0.5", "--content-base", "--max-train-samples", "4",
            "--batch-size", "2", "--grad-accum", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "content base fitted on" in result.output
    run = load_run(out)
    assert run.model.hidden_size == 576 and run.data.has_new_items
    assert run.data.item_texts[1].startswith("Item 0 (") and "Comedy" in run.data.item_texts[1]
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--split", "test-new", "--json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["compare", str(out), "--split", "test-new", "--against",
                                      "frozen LLM", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert "attribute overlap (no LLM)" in rows and all("ΔHR@1" in r for r in rows.values())
