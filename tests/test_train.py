"""LLaRA training on a tiny random Llama (fast) and on the real SmolLM2 (end to end)."""

from __future__ import annotations

import io
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import TEST_DEVICE, tiny_llm_folder, tiny_settings, write_cycle_files
from rich.console import Console
from safetensors.torch import load_file

from llara_kit.cli import cli
from llara_kit.config import PRESETS, TrainConfig, resolve
from llara_kit.encoders.pretrain import PretrainSettings, pretrain_encoder
from llara_kit.errors import LlaraKitError
from llara_kit.run import choose_encoder, load_prepared, load_run
from llara_kit.run_folder import read_config, read_summary, write_config
from llara_kit.storage import HOME_ENV, read_jsonl
from llara_kit.training.train import Trainer, learning_rate, train

pytestmark = pytest.mark.gpu  # run first by the GPU check, on LLARA_KIT_TEST_DEVICE


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"data_dir": str(write_cycle_files(root / "cycle")),
            "llm": str(tiny_llm_folder())}


def config(assets, **kw) -> TrainConfig:
    return tiny_settings(assets["data_dir"], **kw)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}


COMBOS = list(itertools.product(["sasrec", "gru4rec", "caser"], ["linear", "mlp"],
                                ["linear", "text-only", "hybrid-only", "two-stage", "cosine"]))


@pytest.mark.parametrize(("encoder", "projector", "schedule"), COMBOS)
def test_every_combination_trains(assets, tmp_path, encoder, projector, schedule):
    trainer = Trainer(config(assets, encoder=encoder, projector=projector, schedule=schedule,
                             max_train_samples=8, lr=1e-2),
                      tmp_path, show_progress=False)
    lora_before = _weights(trainer.model.llm)
    proj_before = _weights(trainer.model.projector)
    summary = trainer.run()
    assert summary["steps"] == 2 and summary["final_loss"] == summary["final_loss"]  # not NaN
    lora_after = _weights(trainer.model.llm)
    assert any(not torch.equal(lora_before[k], lora_after[k]) for k in lora_before)
    proj_after = _weights(trainer.model.projector)
    projector_moved = any(not torch.equal(proj_before[k], proj_after[k]) for k in proj_before)
    log = read_jsonl(tmp_path / "train_log.jsonl")
    saw_hybrid = sum(e["hybrid_share"] for e in log) > 0
    assert projector_moved == saw_hybrid  # the projector learns from hybrid samples only
    if schedule == "text-only":
        assert not saw_hybrid
    if schedule == "hybrid-only":
        assert all(e["hybrid_share"] == 1.0 for e in log)


def test_projector_gradient_only_from_hybrid_samples(assets, tmp_path):
    # the plain head: the residual one starts at zero, so no gradient reaches the projector
    # before its first step
    trainer = Trainer(config(assets, objective_options={"residual": False}), tmp_path,
                      show_progress=False)
    model = trainer.model.train()
    for p_hybrid, expect_grad in ((0.0, False), (1.0, True)):
        model.zero_grad(set_to_none=True)
        model(trainer.micro_batch(0, p_hybrid)).backward()
        grads = [p.grad for p in model.projector.parameters()]
        if expect_grad:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)
    assert all(p.grad is None for p in model.encoder.parameters())  # frozen


def test_behavioural_tokens_carry_projected_vectors(assets, tmp_path):
    trainer = Trainer(config(assets, user_conditioned=False), tmp_path, show_progress=False)
    model, batch = trainer.model.eval(), trainer.micro_batch(0, 1.0)
    embeds = model.input_embeddings(batch)  # (B, T, H)
    at = batch.input_ids == trainer.model.behaviour_id
    assert int(at.sum()) == len(batch.item_ids) == 4 * (5 + 10) - sum(
        5 - int(n) for n in trainer.data.splits["train"].lengths[trainer._epoch(0)[0][0]])
    expected = model.projector(model.encoder.item_embeddings(batch.item_ids))
    assert torch.allclose(embeds[at], expected)
    plain = model.llm.get_input_embeddings()(batch.input_ids)
    assert torch.equal(embeds[~at], plain[~at])


def test_user_conditioned_candidate_tokens(assets, tmp_path):
    """user_signal "product": candidates' tokens add projector(item * user state); history
    tokens do not."""
    trainer = Trainer(config(assets, user_conditioned=True, user_signal="product"), tmp_path,
                      show_progress=False)
    model, batch = trainer.model.eval(), trainer.micro_batch(0, 1.0)
    with torch.no_grad():
        got = model.behaviour_vectors(batch)  # (K, H)
        items = model.encoder.item_embeddings(batch.item_ids)
        plain = model.projector(items)
        cand = batch.item_is_candidate
        assert int(cand.sum()) == 10 * len(batch.hybrid)  # C candidates in every row
        assert torch.allclose(got[~cand], plain[~cand])
        state = model.encoder.encode(batch.history, batch.lengths)  # (B, d)
        joint = items[cand] * state[batch.item_rows[cand]]
        assert torch.allclose(got[cand], plain[cand] + model.projector(joint), atol=1e-6)
        # another history changes the candidates' tokens, not the history's
        batch.history = batch.history.roll(1, dims=0)
        moved = model.behaviour_vectors(batch)
    assert torch.equal(moved[~cand], got[~cand]) and not torch.allclose(moved[cand], got[cand])


def test_user_signal_score_writes_the_encoders_score(assets, tmp_path):
    """user_signal "score": a candidate's token adds <item, user state> times a learned
    vector, which is saved with the run and reloaded."""
    cfg = config(assets, max_train_samples=8)  # the default user_signal
    trainer = Trainer(cfg, tmp_path / "probe", show_progress=False)
    model, batch = trainer.model.eval(), trainer.micro_batch(0, 1.0)
    with torch.no_grad():
        got = model.behaviour_vectors(batch)  # (K, H)
        items = model.encoder.item_embeddings(batch.item_ids)
        cand = batch.item_is_candidate
        state = model.encoder.encode(batch.history, batch.lengths)  # (B, d)
        score = (items[cand] * state[batch.item_rows[cand]]).sum(-1, keepdim=True)  # (Kc, 1)
        direction = model.score_direction.weight.T  # (1, H)
        assert torch.allclose(got[cand], model.projector(items[cand]) + score * direction,
                              atol=1e-5)
    train(cfg, tmp_path / "run", show_progress=False)  # the same seed: the same start
    loaded = load_run(tmp_path / "run", device="cpu").model.score_direction.weight
    saved = load_file(tmp_path / "run/score_direction.safetensors")["weight"]
    assert torch.equal(loaded, saved) and not torch.equal(loaded, direction.T)  # it trained
    with pytest.raises(LlaraKitError, match="user_signal='sum': use product or score"):
        TrainConfig(user_signal="sum")


def test_older_run_folders_read_as_they_trained(tmp_path):
    """config.json without the settings added later: read with the values those runs used."""
    old = TrainConfig().to_dict()
    for name in ("objective", "user_conditioned", "user_signal"):
        del old[name]
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    cfg = read_config(tmp_path)
    assert (cfg.objective, cfg.user_conditioned, cfg.user_signal) == ("title", False, "product")
    old["user_conditioned"] = True  # user-conditioned before user_signal existed: the product
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    assert read_config(tmp_path).user_signal == "product"


def test_head_objective_reads_the_candidates_markers(assets, tmp_path):
    trainer = Trainer(config(assets, objective="head"), tmp_path, show_progress=False)
    model = trainer.model  # carries its tokenizer and special token ids
    for p_hybrid, marker in ((0.0, model.placeholder_id), (1.0, model.behaviour_id)):
        batch = trainer.micro_batch(0, p_hybrid)
        assert batch.candidate_at.shape == (len(batch.hybrid), 10)
        assert (batch.input_ids.gather(1, batch.candidate_at) == marker).all()
        assert (batch.labels == -100).all()  # the head needs no answer tokens
        idx = trainer.global_micro_batch(0)
        targets = trainer.data.splits["train"].targets[idx]
        assert (torch.tensor(trainer.random_lists(0, idx))[range(len(idx)), batch.target_pos]
                == torch.tensor(targets)).all()


def test_head_objective_fits_a_batch(assets, tmp_path):
    """The listwise loss trains: on one fixed batch it falls far below chance (ln 10)."""
    trainer = Trainer(config(assets, objective="head", lr=3e-3), tmp_path, show_progress=False)
    model, batch = trainer.model.train(), trainer.micro_batch(0, 1.0)
    losses = []
    for _ in range(40):
        loss = model(batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] > 2.0 and sum(losses[-5:]) / 5 < 0.5 * losses[0]


def test_linear_curriculum_raises_the_hybrid_share(assets, tmp_path):
    summary = train(config(assets, max_train_samples=160, batch_size=4), tmp_path / "run",
                    show_progress=False)
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert len(log) == 40 and [e["p_hybrid"] for e in log] == [i / 40 for i in range(40)]
    assert summary["hybrid_share_first"] < 0.3 and summary["hybrid_share_last"] > 0.7


def test_interrupted_run_resumes_to_the_same_weights(assets, tmp_path, monkeypatch):
    cfg = config(assets, max_train_samples=24, checkpoint_every=2)
    train(cfg, tmp_path / "straight", show_progress=False)

    real_step = Trainer._step

    def interrupt_at_3(self, step, total_micro):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step, total_micro)

    monkeypatch.setattr(Trainer, "_step", interrupt_at_3)
    with pytest.raises(LlaraKitError, match="Interrupted at step 3 of 6; checkpoint saved"):
        train(cfg, tmp_path / "broken", show_progress=False)
    assert json.loads((tmp_path / "broken/checkpoint/state.json").read_text()) == {"step": 3}
    monkeypatch.setattr(Trainer, "_step", real_step)
    train(cfg, tmp_path / "broken", resume=True, show_progress=False)
    a = load_file(tmp_path / "straight/adapter/adapter_model.safetensors")
    b = load_file(tmp_path / "broken/adapter/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [e["step"] for e in read_jsonl(tmp_path / "broken/train_log.jsonl")] == list(range(6))
    assert not (tmp_path / "broken/checkpoint").exists()


def test_run_folder_reloads(assets, tmp_path):
    trainer = Trainer(config(assets, schedule="hybrid-only"), tmp_path, show_progress=False)
    write_config(tmp_path, trainer.cfg, trainer.data.manifest)
    trainer.run()
    batch = trainer.micro_batch(0, 1.0)
    with torch.no_grad():
        expected = trainer.model.eval()(batch)
        loaded = load_run(tmp_path, device=TEST_DEVICE)
        assert torch.allclose(loaded.model(batch), expected, atol=1e-5)
    assert loaded.config == trainer.cfg and loaded.data.hash == trainer.data.hash


def test_run_folder_contents_and_no_pickles(assets, tmp_path):
    train(config(assets), tmp_path / "r", show_progress=False)
    names = {p.relative_to(tmp_path / "r").as_posix() for p in (tmp_path / "r").rglob("*")}
    assert {"config.json", "data.json", "projector.safetensors", "objective.safetensors",
            "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
            "encoder/encoder.safetensors", "encoder/encoder.json", "train_log.jsonl",
            "summary.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    saved = json.loads((tmp_path / "r/config.json").read_text())
    assert saved["components"]["encoder"] == {
        "name": "sasrec", "plugin": "llara_kit.components",
        "version": saved["llara_kit_version"]}


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1e-3, warmup=0.1)
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-5) and max(lrs) == pytest.approx(1e-3)
    assert lrs.index(max(lrs)) == 10 and lrs[-1] < 1e-5
    assert all(b <= a for a, b in zip(lrs[10:-1], lrs[11:], strict=True))


def test_new_parts_learn_at_new_lr(assets, tmp_path):
    trainer = Trainer(config(assets, lr=1e-3, new_lr=5e-3, warmup=0.0), tmp_path,
                      show_progress=False)
    lora, new = trainer.optimizer.param_groups
    model = trainer.model
    fresh = {id(p) for m in (model.projector, model.objective, model.score_direction)
             for p in m.parameters()}
    assert {id(p) for p in new["params"]} == fresh and not fresh & {id(p) for p in lora["params"]}
    trainer._step(0, trainer.plan.micro_per_epoch)
    assert (lora["lr"], new["lr"]) == (pytest.approx(1e-3), pytest.approx(5e-3))
    with pytest.raises(LlaraKitError, match="new_lr=0 must be a positive number"):
        TrainConfig(new_lr=0)


def test_config_precedence_and_errors(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 3\nlr = 1e-4\nschedule-options = { switch_at = 0.5 }\n')
    cfg = resolve("paper", toml, {"lr": 2e-4, "batch_size": None})
    assert (cfg.epochs, cfg.lr, cfg.grad_accum) == (3, 2e-4, PRESETS["paper"]["grad_accum"])
    assert cfg.schedule_options == {"switch_at": 0.5} and cfg.batch_size == 8
    toml.write_text("epoch = 3\n")
    with pytest.raises(LlaraKitError, match="Unknown setting 'epoch' in .*c.toml"):
        resolve(None, toml)
    with pytest.raises(LlaraKitError, match="batch_size=0 must be a positive integer"):
        resolve(overrides={"batch_size": 0})


def test_the_head_is_residual_unless_told_and_older_runs_keep_the_plain_head(tmp_path):
    """The head's default options are resolved into the config (and so into config.json);
    a stored head config without them predates the default and reads as the plain head."""
    assert resolve().objective_options == {"residual": True}
    assert resolve(overrides={"objective_options": {"residual": False}}
                   ).objective_options == {"residual": False}
    assert resolve(overrides={"objective": "title"}).objective_options == {}
    saved = resolve().to_dict() | {"objective_options": {}}  # as runs before the default
    (tmp_path / "config.json").write_text(json.dumps({"config": saved}))
    assert read_config(tmp_path).objective_options == {"residual": False}


def test_resume_refuses_changed_settings(assets, tmp_path):
    train(config(assets, max_train_samples=8), tmp_path / "r", show_progress=False)
    with pytest.raises(LlaraKitError, match="--resume with lr=0.1, but the run was started"):
        train(config(assets, max_train_samples=8, lr=0.1), tmp_path / "r", resume=True)
    with pytest.raises(LlaraKitError, match="already holds a run"):
        train(config(assets, max_train_samples=8), tmp_path / "r")
    with pytest.raises(LlaraKitError, match="has finished; evaluate it"):
        train(config(assets, max_train_samples=8), tmp_path / "r", resume=True)


@pytest.mark.slow
def test_cli_train_with_real_smollm2(assets, tmp_path):
    """End to end: the real SmolLM2-135M, a handful of samples, through the CLI, as a
    residual second stage trained on mixed lists of cross-fitted encoders; then reload,
    evaluate on the stored candidates and over the whole catalogue, compare, report."""
    out = tmp_path / "run"
    args = ["train", "--encoder", "gru4rec", "--projector", "mlp", "--schedule", "linear",
            "--dataset", "csv", "--data-dir", assets["data_dir"], "--history", "5",
            "--candidates", "10", "--split", "0.6,0.2,0.2", "--template", "item",
            "--max-train-samples", "4", "--batch-size", "2", "--grad-accum", "1",
            "--objective-option", "residual=true", "--negatives", "mixed", "--cross-fit", "2",
            "--out", str(out)]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "steps" in result.output and "final loss" in result.output
    loaded = load_run(out)
    assert loaded.config.llm == "smollm2-135m" and loaded.model.hidden_size == 576
    log = read_jsonl(out / "train_log.jsonl")
    assert len(log) == 2 and all(math.isfinite(e["loss"]) for e in log)
    assert read_summary(out)["final_loss"] == log[-1]["loss"]
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it trained
    assert loaded.config.objective == "head" and loaded.config.user_conditioned  # defaults
    assert loaded.model.objective.residual and loaded.config.cross_fit == 2
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert any(k.startswith("fused (λ=") for k in json.loads(result.stdout))
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--candidates", "retrieved",
                                      "--shortlist", "10", "--json"])
    assert result.exit_code == 0, result.output
    retrieved = json.loads(result.stdout)["score-retrieved"]
    shortlisted = read_jsonl(out / "predictions-test-score-retrieved.jsonl")
    assert all(len(r["ranking"]) == 10 for r in shortlisted)  # the encoder's top 10, re-ranked
    assert retrieved["HR@1"]["value"] == pytest.approx(
        np.mean([r["ranking"][0] == r["target"] for r in shortlisted]))
    for candidates in ("stored", "retrieved"):
        result = CliRunner().invoke(cli, ["compare", str(out), "--against", "gru4rec",
                                          "--candidates", candidates, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert len(rows) >= 3 and rows["gru4rec alone"]["ΔHR@1"]["value"] == 0  # itself
        assert all("ΔHR@1" in row for row in rows.values())  # every row on the same users
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "re-ranks its encoder's top 10" in page


def test_cli_train_bad_option_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--projector", "mpl", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "Error: Unknown projector 'mpl'. Available: linear, mlp." in result.output


def test_objective_plugin_from_the_docs_trains(assets, tmp_path):
    """The pairwise objective in docs/plugin-hooks.md registers and trains as written."""
    from pathlib import Path
    from types import SimpleNamespace

    from llara_kit import register_plugin

    docs = (Path(__file__).parents[1] / "docs" / "plugin-hooks.md").read_text()
    section = docs.split("## register_objectives(register)")[1]
    namespace: dict = {}
    exec(section.split("```python\n")[1].split("```")[0], namespace)
    register_plugin(SimpleNamespace(register_objectives=namespace["register_objectives"]),
                    "docs-pairwise")
    for objective in ("pairwise-head", "head"):  # same data, seed and initial weights
        summary = train(config(assets, objective=objective, max_train_samples=8),
                        tmp_path / objective, show_progress=False)
        assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    first = [read_jsonl(tmp_path / o / "train_log.jsonl")[0]["loss"] for o in ("pairwise-head",
                                                                              "head")]
    assert first[0] != pytest.approx(first[1], rel=1e-3)  # the plugin's loss was the one used
    assert load_run(tmp_path / "pairwise-head").model.objective.__class__.__name__ == \
        "PairwiseHead"


def test_train_uses_the_encoder_pretrain_stored_or_the_one_named(assets, tmp_path, monkeypatch):
    """`pretrain --epochs 2` then `train`: the run uses that encoder and says so;
    --encoder-dir names another; a resumed run keeps its own copy."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    cfg = config(assets, max_train_samples=4)
    data = load_prepared(cfg)
    stored = pretrain_encoder(cfg.encoder, data, cfg.encoder_options,
                              PretrainSettings(epochs=2, patience=5), show_progress=False)
    console = Console(file=io.StringIO(), width=400)
    train(cfg, tmp_path / "run", console=console, show_progress=False)
    said = console.file.getvalue()
    assert "encoder: stored by `llara-kit pretrain` (2 epochs of at most 2" in said
    assert str(stored.path) in said
    copy = json.loads((tmp_path / "run/encoder/pretrain.json").read_text())
    assert copy["key"] == stored.report["key"]

    newer = pretrain_encoder(cfg.encoder, data, cfg.encoder_options,
                             PretrainSettings(epochs=1, seed=5), show_progress=False)
    assert choose_encoder(cfg, data, tmp_path / "elsewhere").folder == newer.path  # newest
    assert choose_encoder(cfg, data, tmp_path / "run").how == "the run's own copy"
    named = replace(cfg, encoder_dir=str(stored.path))
    assert choose_encoder(named, data, tmp_path / "elsewhere").folder == stored.path
    with pytest.raises(LlaraKitError, match="holds a sasrec encoder, not gru4rec; pass "
                                            "--encoder sasrec"):
        train(replace(named, encoder="gru4rec"), tmp_path / "wrong", show_progress=False)


def test_the_bert4rec_distribution_pretrains_trains_and_evaluates(assets, tmp_path,
                                                                   llara_plugin):
    """plugins/llara-kit-bert4rec (installed by make setup) through the three commands."""
    import llara_kit_bert4rec

    llara_plugin(llara_kit_bert4rec)
    data = ["--dataset", "csv", "--data-dir", assets["data_dir"], "--history", "5",
            "--candidates", "10", "--split", "0.6,0.2,0.2"]
    runner = CliRunner()
    pre = runner.invoke(cli, ["pretrain", "--encoder", "bert4rec", *data, "--epochs", "2",
                              "--encoder-option", "hidden_size=16", "--json"])
    assert pre.exit_code == 0, pre.output
    assert json.loads(pre.stdout)["encoder"] == "bert4rec"
    out = tmp_path / "run"
    result = runner.invoke(cli, [
        "train", "--encoder", "bert4rec", "--projector", "mlp", "--schedule", "linear", *data,
        "--encoder-option", "hidden_size=16", "--llm", assets["llm"], "--template", "item",
        "--max-train-samples", "8", "--batch-size", "4", "--grad-accum", "1", "--precision", "fp32",
        "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "stored by `llara-kit pretrain` (2 epochs" in result.output
    evaluated = runner.invoke(cli, ["evaluate", str(out), "--no-fuse", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    rows = read_jsonl(out / "predictions-test-score.jsonl")
    assert len(rows) == 8  # the cycle data's test users
    assert json.loads(evaluated.stdout)["score"]["HR@1"]["value"] == pytest.approx(
        np.mean([r["ranking"][0] == r["target"] for r in rows]))
