"""Benchmark: do the item titles, as the LLM reads them, hold anything SASRec lacks?

    .venv/bin/python examples/benchmarks/title_signal.py [--protocol loo] [--seed 0] \
        [--llm smollm2-135m] [--train-samples N] [--control-encoder-dir FOLDER] [--test]

A cheap bound on what the LLM stage can add (issue 22). Each title goes once through the
frozen LLM (the mean of its last hidden states, centred over the catalogue: the item's title
vector). A bilinear title model, score(user, item) = (user vector @ A) . (title vector @ B)
with a user = [mean of the history's title vectors, the last one's], rank 64, learns from N
random train samples (default: all) with a softmax over the whole catalogue, a tenth of them
held out to stop early (a CPU-minute on all of them). It is then fused with SASRec, score =
SASRec + w * title score, w chosen on valid NDCG@10: on the other half of the valid users for
the valid rows (two folds, scikit-learn's KFold), on every valid user for the test rows.

Printed: HR@1 and NDCG@10 on the 20 random candidates and re-ranking SASRec's top 20 unseen
items (the whole-catalogue protocol; a target outside them is a miss), each with its paired
difference to SASRec alone. ``--control-encoder-dir`` (e.g. another seed's SASRec) fuses a
second ID model the same way, alone and with the title model: the gain any second opinion
gives, to set the titles' against. ``--test`` scores test once.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import KFold

from llara_kit.config import TrainConfig
from llara_kit.encoders import load_encoder
from llara_kit.encoders.ranking import all_item_scores
from llara_kit.encoders.shortlists import list_ranks, shortlists
from llara_kit.metrics import paired_difference, per_sample
from llara_kit.model.llm import load_backbone
from llara_kit.render import format_paired
from llara_kit.run import choose_encoder, load_prepared

RANK = 64
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


@torch.no_grad()
def title_vectors(llm: str, titles: list[str], batch: int = 64) -> torch.Tensor:
    """(n_items + 1, d) the mean last hidden state of each title, centred over the items and
    unit length; row 0 (padding) zero."""
    backbone = load_backbone(llm)
    tok, decoder = backbone.tokenizer, backbone.model.get_decoder()
    out = [torch.zeros(1, backbone.hidden_size)]
    for start in range(1, len(titles), batch):
        enc = tok(titles[start : start + batch], return_tensors="pt", padding=True)
        states = decoder(**enc).last_hidden_state  # (b, T, d)
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (b, T, 1)
        mean = (states * mask).sum(1) / mask.sum(1)  # (b, d)
        out.append(mean)
    vectors = torch.cat(out)  # (n_items + 1, d)
    # centred first: an LLM's states share one large common direction that hides the rest
    centred = vectors[1:] - vectors[1:].mean(0)
    return torch.cat([vectors[:1] * 0, torch.nn.functional.normalize(centred, dim=-1)])


class TitleModel(torch.nn.Module):
    """An item scorer (``llara_kit.encoders.ranking``) on title vectors alone."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        d = vectors.shape[1]
        self.vectors = vectors
        self.user = torch.nn.Linear(2 * d, RANK, bias=False)
        self.item = torch.nn.Linear(d, RANK, bias=False)

    def users(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(n, H) left-aligned ids (0 = padding, a zero vector), (n,) -> (n, 2d): the mean of
        each history's title vectors and the last item's."""
        n = lengths.clamp(min=1)
        mean = self.vectors[history].sum(1) / n[:, None]  # (n, d)
        last = self.vectors[history[torch.arange(len(history)), n - 1]]  # (n, d)
        return torch.cat([mean, last], dim=1)

    def score(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """(n, 2d) -> (n, n_items + 1) scores; the padding item never wins."""
        scores = self.user(user_vectors) @ self.item(self.vectors).T
        scores[:, 0] = -torch.inf
        return scores

    def forward(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.score(self.users(history, lengths))


def train_title_model(vectors: torch.Tensor, data, seed: int, samples: int | None,
                      steps: int = 3000, batch: int = 1024, every: int = 10,
                      patience: int = 300) -> TitleModel:
    """Full-catalogue softmax on ``samples`` random train samples (None: all): AdamW steps of
    up to ``batch`` of them, a tenth held out to stop early (its loss checked every ``every``
    steps; the best state is kept; training stops ``patience`` steps after the best)."""
    torch.manual_seed(seed)
    model = TitleModel(vectors)
    s = data.splits["train"]
    rows = (torch.randperm(len(s))[:samples] if samples else torch.randperm(len(s))).numpy()
    x = model.users(torch.from_numpy(s.history[rows]), torch.from_numpy(s.lengths[rows]))
    y = torch.from_numpy(s.targets[rows])
    held = max(len(y) // 10, 1)
    fit = torch.arange(held, len(y))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    best, best_state, best_step = np.inf, None, 0
    for step in range(1, steps + 1):
        idx = fit[torch.randperm(len(fit))[:batch]]
        loss = torch.nn.functional.cross_entropy(model.score(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every:
            continue
        with torch.no_grad():
            held_loss = torch.nn.functional.cross_entropy(model.score(x[:held]), y[:held]).item()
        if held_loss < best:
            best, best_step = held_loss, step
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if step - best_step >= patience or step == steps:
            print(f"title model, {len(y):,} samples: best held-out loss {best:.3f} at step "
                  f"{best_step} (uniform: {np.log(data.n_items):.2f})", flush=True)
            break
    model.load_state_dict(best_state)
    return model.eval()


METRICS = ("HR@1", "NDCG@10")  # the fusion weights are chosen on NDCG@10 (smoother)


def grid_values(base: np.ndarray, others: list[np.ndarray], lists: np.ndarray,
                targets: np.ndarray) -> tuple[list[tuple], dict[str, np.ndarray]]:
    """Every weight combination (each w_j from WEIGHTS) and, per metric, the (len(grid), n)
    per-user values of base + sum_j w_j * others[j] ranked over each user's list.
    base, others[j]: (n, n_items + 1); lists: (n, K); a target outside its list is a miss."""
    b = np.take_along_axis(base, lists, 1)  # (n, K)
    o = [np.take_along_axis(x, lists, 1) for x in others]
    grid = list(itertools.product(WEIGHTS, repeat=len(others)))
    values = [list_values(b + sum(w * x for w, x in zip(ws, o, strict=True)), lists, targets)
              for ws in grid]
    return grid, {m: np.stack([v[m] for v in values]) for m in METRICS}


def list_values(list_scores: np.ndarray, lists: np.ndarray, targets: np.ndarray
                ) -> dict[str, np.ndarray]:
    """{metric: (n,) per-user values} of ranking each list (n, K) by its scores (n, K); a
    target outside its list is a miss."""
    ranks = list_ranks(list_scores, lists, targets)
    return {m: per_sample(ranks, m) for m in METRICS}


def chosen_values(values: dict[str, dict[str, np.ndarray]], split: str, seed: int
                  ) -> tuple[dict[str, np.ndarray], list[int]]:
    """Per metric, the (n,) values of ``split`` under the weights best on valid NDCG@10: for
    valid, chosen on the other fold of its users; for test, on every valid user. Also the
    chosen grid indices."""
    tuning = values["valid"]["NDCG@10"]  # (len(grid), n_valid)
    if split != "valid":
        best = int(tuning.mean(1).argmax())
        return {m: v[best] for m, v in values[split].items()}, [best]
    out = {m: np.zeros(v.shape[1]) for m, v in values[split].items()}
    picks = []
    for fit, apply in KFold(2, shuffle=True, random_state=seed).split(tuning.T):
        picks.append(int(tuning[:, fit].mean(1).argmax()))
        for m, v in values[split].items():
            out[m][apply] = v[picks[-1], apply]
    return out, picks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="loo", choices=["loo", "llara"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--control-encoder-dir", type=Path)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="Train the title model on this many random train samples "
                             "(default: all).")
    parser.add_argument("--test", action="store_true",
                        help="Also score test once, with the weights chosen on all valid users.")
    args = parser.parse_args()
    cfg = TrainConfig(protocol=args.protocol, seed=args.seed, llm=args.llm)
    data = load_prepared(cfg)
    encoder = load_encoder(choose_encoder(cfg, data, "/nonexistent", False).folder)
    title = train_title_model(title_vectors(args.llm, data.titles), data, args.seed,
                              args.train_samples)
    size = data.settings.candidates
    splits = ["valid", "test"] if args.test else ["valid"]
    scorers = {"SASRec": encoder, "title model": title}
    if args.control_encoder_dir:
        scorers["a second SASRec (control)"] = load_encoder(args.control_encoder_dir)
    scores = {sp: {name: all_item_scores(scorer, data, sp) for name, scorer in scorers.items()}
              for sp in splits}  # split -> name -> (n, n_items + 1)
    lists = {("20 random", sp): data.splits[sp].candidates for sp in splits} | {
        (f"SASRec's top {size}", sp): shortlists(encoder, data, sp, size).items for sp in splits}
    others = [n for n in scorers if n != "SASRec"]
    print(f"\nML-100K {args.protocol}, {args.llm} title vectors (rank {RANK}); fusion weights "
          f"from {WEIGHTS}, chosen on valid NDCG@10: on the other half of the valid users "
          "(valid rows), on every valid user (test rows)\n")
    print("| split | candidates | scorer | SASRec alone HR@1 / NDCG@10 | scorer alone | SASRec "
          "+ w * scorer | ΔHR@1 vs SASRec [95%] | ΔNDCG@10 vs SASRec [95%] | w |")
    print("|---|---|---|---|---|---|---|---|---|")
    for names in [[n] for n in others] + ([others] if len(others) > 1 else []):
        for label in ("20 random", f"SASRec's top {size}"):
            values = {}  # split -> metric -> (len(grid), n)
            for sp in splits:
                grid, values[sp] = grid_values(scores[sp]["SASRec"],
                                               [scores[sp][n] for n in names],
                                               lists[label, sp], data.splits[sp].targets)
            for sp in splits:
                fused, picks = chosen_values(values, sp, args.seed)
                alone = {m: v[0] for m, v in values[sp].items()}  # grid[0]: every w = 0
                own = "-"
                if len(names) == 1:
                    single = list_values(
                        np.take_along_axis(scores[sp][names[0]], lists[label, sp], 1),
                        lists[label, sp], data.splits[sp].targets)
                    own = " / ".join(f"{single[m].mean():.3f}" for m in METRICS)
                print(f"| {sp} | {label} | {' + '.join(names)} | "
                      + " / ".join(f"{alone[m].mean():.3f}" for m in METRICS) + f" | {own} | "
                      + " / ".join(f"{fused[m].mean():.3f}" for m in METRICS) + " | "
                      + " | ".join(format_paired(paired_difference(
                          fused[m], alone[m], binary=m == "HR@1")) for m in METRICS)
                      + f" | {'; '.join(str(grid[p]) for p in picks)} |")


if __name__ == "__main__":
    main()
