"""Bounded prompts: titles cut in tokens, the longest prompt checked, the memory estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import CYCLE_SETTINGS, tiny_llm_folder, write_cycle_files
from transformers import AutoTokenizer

from llara_kit.cli import cli
from llara_kit.data import prepare_data
from llara_kit.errors import LlaraKitError
from llara_kit.model.lengths import ELLIPSIS, cut_titles, longest_prompt, step_memory
from llara_kit.model.prompts import TEMPLATES, PromptTemplate

PASTED = "A description pasted into the title column. " * 450  # 20,250 characters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llm_folder()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return AutoTokenizer.from_pretrained(tiny)


def long_title_files(folder):
    """The cycle data with item 3's title a pasted description."""
    write_cycle_files(folder)
    items = (folder / "items.csv").read_text().replace("i3,Item 3\n", f'i3,"{PASTED}"\n')
    (folder / "items.csv").write_text(items)
    return folder


def test_titles_over_the_limit_are_cut_and_the_rest_kept(tokenizer):
    titles = ["", "Heat", PASTED, "Ünïcödé " * 30]
    cut = cut_titles(titles, tokenizer, 16)
    assert cut.titles[:2] == ["", "Heat"] and cut.cut == 2 and cut.longest_item == 2
    for before, after in zip(titles[2:], cut.titles[2:], strict=True):
        assert after.endswith(ELLIPSIS) and before.startswith(after[:-1].strip())
        assert len(tokenizer(" " + after[:-1], add_special_tokens=False)["input_ids"]) <= 16
        assert "\ufffd" not in after
    assert cut.longest_tokens == len(tokenizer(" " + PASTED, add_special_tokens=False)
                                     ["input_ids"])
    assert cut_titles(titles, tokenizer, 0).titles == titles  # 0: whole titles


def test_the_longest_prompt_bounds_every_prompt_of_its_split(tmp_path, tokenizer):
    data = prepare_data("csv", {"data_dir": long_title_files(tmp_path / "d")}, CYCLE_SETTINGS,
                        home=tmp_path / "home")[0]
    template = PromptTemplate(TEMPLATES["item"])

    def length(split, i, candidates):
        texts = [template.render(data.titles, data.splits[split].history_of(i), candidates,
                                 True, phrasing).text for phrasing in range(4)]
        return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    answer = 1 + max(len(tokenizer(" " + t, add_special_tokens=False)["input_ids"])
                     for t in data.titles[1:])
    test = data.splits["test"]
    exact = max(length("test", i, test.candidates[i].tolist()) for i in range(len(test)))
    assert longest_prompt(data, "test", template, tokenizer).tokens == exact + answer
    train, rng = data.splits["train"], np.random.default_rng(0)
    bound = longest_prompt(data, "train", template, tokenizer).tokens
    drawn = [length("train", i, [int(train.targets[i]), *rng.choice(
        np.arange(1, data.n_items + 1), 9, replace=False)]) for i in range(len(train))]
    assert max(drawn) + answer <= bound


def test_every_phrasing_of_a_template_is_measured(tmp_path, tokenizer):
    """A template plugin with twelve phrasings, the last one long: training may draw it."""
    data = prepare_data("csv", {"data_dir": write_cycle_files(tmp_path / "d")}, CYCLE_SETTINGS,
                        home=tmp_path / "home")[0]
    short = "Seen {history}. Pick from {candidates}. Answer:"
    phrasings = (short,) * 11 + ("Consider this at length: " * 40 + short,)
    measured = [longest_prompt(data, "test", PromptTemplate(phrasings[:n]), tokenizer).tokens
                for n in (11, 12)]
    assert measured[1] - measured[0] >= 200  # the twelfth phrasing's words counted

    class Unsaid:  # a template that does not say how many phrasings it has
        render = PromptTemplate(phrasings).render

    with pytest.raises(LlaraKitError, match="The prompt template Unsaid has n_phrasings=None; "
                                            "give it an `n_phrasings` attribute"):
        longest_prompt(data, "test", Unsaid(), tokenizer)


# One training step of a 2-layer Llama (SmolLM2's proportions, hidden 192) on prompts of
# about 1,700 tokens, in a fresh process: its peak resident memory above what was resident
# when the step began (Linux resets the peak through /proc/self/clear_refs), next to the
# estimate the trainer checked.
MEASURED_STEP = '''
import json, sys
from pathlib import Path

from helpers import CYCLE_SETTINGS, tiny_llm_folder, write_cycle_files
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import llara_kit.training.train as training
from llara_kit.config import TrainConfig

root = Path(sys.argv[1])
folder = write_cycle_files(root / "d")
title = " ".join(["river night garden stone"] * 25)
(folder / "items.csv").write_text("item,title\\n" + "".join(
    f"i{i},Item {i} {title}\\n" for i in range(30)))
tokenizer = AutoTokenizer.from_pretrained(tiny_llm_folder())
LlamaForCausalLM(LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=192, intermediate_size=512, num_hidden_layers=2,
    num_attention_heads=3, num_key_value_heads=1, tie_word_embeddings=True,
)).save_pretrained(root / "llm")
tokenizer.save_pretrained(root / "llm")
checked = []
estimate = training.step_memory
training.step_memory = lambda *a: checked.append((a, estimate(*a))) or checked[-1][1]
s = CYCLE_SETTINGS
trainer = training.Trainer(TrainConfig(
    dataset="csv", data_dir=str(folder), llm=str(root / "llm"), history=s.history,
    candidates=s.candidates, split=s.split, template="item", precision="fp32", batch_size=2,
    grad_accum=1, max_train_samples=2, title_tokens=0, encoder_options={"hidden_size": 16}),
    root / "run", show_progress=False)
def status(field):  # bytes
    line = next(x for x in open("/proc/self/status") if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024

open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from here
before = status("VmRSS")
trainer.run()
print(json.dumps({"args": checked[0][0], "estimate": checked[0][1],
                  "step": status("VmHWM") - before}))
'''


def test_the_memory_estimate_is_that_of_a_measured_training_step(tmp_path):
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", MEASURED_STEP, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    layers, hidden, heads, batch, tokens, width, checkpointing = measured["args"]
    assert (layers, hidden, heads, batch, width, checkpointing) == (2, 192, 3, 2, 4, False)
    assert tokens > 1500  # attention's tokens^2 term is a third of the estimate here
    assert 0.7 < measured["estimate"] / measured["step"] < 1.5, measured  # 1.03 when written
    assert step_memory(*measured["args"][:-1], True) == measured["estimate"] // 2


def train_args(root, tiny, *more):
    return ["train", "--dataset", "csv", "--data-dir", str(long_title_files(root / "d")),
            "--llm", str(tiny), "--history", "5", "--candidates", "10", "--split",
            "0.6,0.2,0.2", "--template", "item", "--batch-size", "2", "--grad-accum", "1",
            "--max-train-samples", "4", "--encoder-option", "hidden_size=16", *more]


def test_a_long_title_trains_cut_and_data_info_shows_the_cut(tmp_path, tiny):
    result = CliRunner().invoke(cli, train_args(tmp_path, tiny, "--out", str(tmp_path / "run")))
    assert result.exit_code == 0, result.output
    assert "1 title (3.3%) cut to 48 tokens; the longest has" in result.output
    info = CliRunner().invoke(cli, ["data", "info", "--dataset", "csv", "--data-dir",
                                    str(tmp_path / "d"), "--history", "5", "--candidates", "10",
                                    "--split", "0.6,0.2,0.2", "--llm", str(tiny), "--json"])
    assert info.exit_code == 0, info.output
    titles = json.loads(info.output)["titles"]
    assert titles["cut"] == 1 and titles["longest_item"] == "i3"
    assert titles["title_tokens"] == 48 and titles["longest_tokens"] > 4000


@pytest.mark.parametrize(("more", "expected"), [
    (["--title-tokens", "0"], "tokens, over --max-prompt-tokens 2,048, the LLM's context "
                              "length; lower --title-tokens or --history."),
    (["--max-prompt-tokens", "100"], "tokens, over --max-prompt-tokens 100; lower "
                                     "--title-tokens or --history."),
])
def test_a_prompt_too_long_is_refused_in_one_sentence(tmp_path, tiny, more, expected):
    result = CliRunner().invoke(cli, train_args(tmp_path, tiny, *more, "--out",
                                                str(tmp_path / "run")))
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: The longest train prompt (user 'u") and last.endswith(
        expected), last
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_micro_batch_that_cannot_fit_is_refused_before_the_first_step(tmp_path, tiny,
                                                                         monkeypatch):
    # a 1 MiB machine
    monkeypatch.setattr("llara_kit.training.train.free_memory", lambda device: 2**20)
    result = CliRunner().invoke(cli, train_args(tmp_path, tiny, "--out", str(tmp_path / "run")))
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: A training micro-batch of 2 prompts of up to ") and \
        "GiB (fp32) but 0.0 GiB is free on cpu; lower --batch-size" in last, last
