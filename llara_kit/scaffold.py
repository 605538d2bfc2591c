"""``llara-kit new-plugin``: a working, tested plugin package to start from.

The package holds a pyproject with the ``llara_kit`` entry point, one module with a small but
real component of the chosen kind, a test that runs it through ``llara_kit.testing``, and a
README. ``pip install -e NAME`` then ``pytest NAME`` passes, and the component is usable by
name (``llara-kit train --encoder NAME``, ``--projector NAME``, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

from llara_kit.errors import LlaraKitError
from llara_kit.plugins import KINDS
from llara_kit.version import VERSION

_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

_MODULES = {
    "encoder": '''\
"""{name}: a sequence encoder for llara-kit (the mean of the history's item embeddings,
then a linear layer). Replace ``encode`` with your model."""

from torch import nn

from llara_kit import hookimpl
from llara_kit.encoders import Encoder


class {cls}(Encoder):
    name = "{name}"

    def __init__(self, config):
        super().__init__(config)
        self.mix = nn.Linear(config.hidden_size, config.hidden_size)

    def encode(self, seq, lengths):  # (B, L) item ids, (B,) lengths -> (B, d)
        mask = (seq.new_ones(seq.shape).cumsum(1) <= lengths[:, None]).unsqueeze(-1)
        mean = (self.item_embedding(seq) * mask).sum(1) / lengths[:, None]
        return self.mix(mean)


@hookimpl
def register_encoders(register):
    register("{name}", {cls}, description="mean of history embeddings + linear")
''',
    "projector": '''\
"""{name}: a projector for llara-kit, behavioural vectors (d) -> LLM embeddings (H)."""

from torch import nn

from llara_kit import hookimpl


class {cls}(nn.Module):
    def __init__(self, in_dim, out_dim, rank=16):
        super().__init__()
        self.down = nn.Linear(in_dim, rank, bias=False)
        self.up = nn.Linear(rank, out_dim)

    def forward(self, x):  # (..., d) -> (..., H)
        return self.up(self.down(x))


@hookimpl
def register_projectors(register):
    register("{name}", {cls}, description="Linear d -> r -> H")
''',
    "schedule": '''\
"""{name}: a curriculum schedule for llara-kit: hybrid prompts ramp up over the first
``ramp`` of training, then stay."""

from llara_kit import hookimpl


def {func}(ramp=0.5):
    def p_hybrid(progress):  # training progress in [0, 1] -> probability of a hybrid prompt
        return min(1.0, progress / ramp)

    return p_hybrid


@hookimpl
def register_schedules(register):
    register("{name}", {func}, description="linear ramp, then hybrid only")
''',
    "template": '''\
"""{name}: a prompt template for llara-kit (books)."""

from functools import partial

from llara_kit import hookimpl
from llara_kit.model.prompts import PromptTemplate

PHRASINGS = (
    "This reader has read these books, in order: {{history}}. Which book will they read "
    "next? Choose one of these {{n}} books: {{candidates}}. Answer:",
    "Books read so far: {{history}}. Of these {{n}}: {{candidates}}, the next one is. Answer:",
)


@hookimpl
def register_templates(register):
    register("{name}", partial(PromptTemplate, PHRASINGS), description="books")
''',
    "dataset": '''\
"""{name}: a data set for llara-kit: ``events.tsv`` (user, item, unix time) and
``titles.tsv`` (item, title), tab-separated with header rows, in ``data_dir``."""

from pathlib import Path

from llara_kit import hookimpl
from llara_kit.data.raw import parse_time, read_table, require_file
from llara_kit.data.sources import assemble


class {cls}:
    def __init__(self, data_dir=None):
        self.folder = Path(data_dir or ".")

    def read(self):
        events = require_file(self.folder / "events.tsv", "Events")
        titles = require_file(self.folder / "titles.tsv", "Titles")
        _, rows = read_table(events, "\\t")
        interactions = ((u, i, parse_time(t, events, n)) for n, (u, i, t) in rows)
        _, rows = read_table(titles, "\\t")
        items = ((n, item, title, None) for n, (item, title) in rows)
        return assemble(interactions, items, titles, [events, titles])


@hookimpl
def register_datasets(register):
    register("{name}", {cls}, description="events.tsv + titles.tsv")
''',
    "objective": '''\
"""{name}: a training objective for llara-kit: the ``head`` objective's score head (one
score per candidate, read at its item marker), trained by a pairwise loss: the target
above each other candidate (BPR) instead of the listwise cross-entropy."""

from torch.nn import functional as F

from llara_kit import hookimpl
from llara_kit.model.objectives import HeadObjective


class {cls}(HeadObjective):
    def loss(self, model, batch):
        scores = self.candidate_scores(model, batch)  # (B, C)
        target = scores.gather(1, batch.target_pos[:, None])  # (B, 1)
        others = scores.new_ones(scores.shape, dtype=bool)
        others[range(len(scores)), batch.target_pos] = False
        return -F.logsigmoid(target - scores)[others].mean()


@hookimpl
def register_objectives(register):
    register("{name}", {cls}, description="score head, pairwise BPR loss")
''',
}

_TESTS = {
    "encoder": '''\
from llara_kit.testing import check_encoder


def test_{func}_keeps_the_encoder_contract(tmp_path):
    check_encoder("{name}", tmp_path)
''',
    "projector": '''\
from llara_kit.testing import check_projector


def test_{func}_keeps_the_projector_contract():
    check_projector("{name}")
    check_projector("{name}", rank=4)
''',
    "schedule": '''\
from llara_kit.testing import check_schedule


def test_{func}_keeps_the_schedule_contract():
    check_schedule("{name}")
    check_schedule("{name}", ramp=0.2)
''',
    "template": '''\
from llara_kit.testing import check_template


def test_{func}_keeps_the_template_contract():
    check_template("{name}")
''',
    "dataset": '''\
from llara_kit.testing import check_dataset


def test_{func}_keeps_the_dataset_contract(tmp_path):
    (tmp_path / "events.tsv").write_text(
        "user\\titem\\ttime\\n" + "".join(f"u{{u}}\\ti{{(u + t) % 9}}\\t{{t}}\\n"
                                    for u in range(4) for t in range(5)))
    (tmp_path / "titles.tsv").write_text(
        "item\\ttitle\\n" + "".join(f"i{{i}}\\tBook {{i}}\\n" for i in range(9)))
    check_dataset("{name}", tmp_path)
''',
    "objective": '''\
from llara_kit.testing import check_objective


def test_{func}_keeps_the_objective_contract():
    check_objective("{name}")  # on the embedded SmolLM2-135M
    check_objective("{name}", residual=True)
''',
}

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "A llara-kit {kind} plugin"
requires-python = ">=3.10"
dependencies = ["llara-kit>={version}"]

[project.entry-points.llara_kit]
{name} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]
'''

_README = '''\
# {name}

A llara-kit {kind} plugin, written by `llara-kit new-plugin {name} --kind {kind}`.

```bash
pip install -e {name}          # registers it through the llara_kit entry point
pytest {name}                  # its contract test (llara_kit.testing)
llara-kit list-plugins         # shows {name}
{usage}
```
'''

# The command that uses each kind in a run (docs/writing-plugins.md shows the same, tested).
USAGE = {
    "encoder": "llara-kit train --encoder {name} --projector mlp --schedule linear",
    "projector": "llara-kit train --encoder sasrec --projector {name} --schedule linear",
    "schedule": "llara-kit train --encoder sasrec --projector mlp --schedule {name}",
    "template": "llara-kit train --encoder sasrec --projector mlp --schedule linear "
                "--template {name}",
    "dataset": "llara-kit train --dataset {name} --data-dir FOLDER --template item",
    "objective": "llara-kit train --encoder sasrec --projector mlp --schedule linear "
                 "--objective {name}",
}


def write_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the package ``parent/name`` for a ``kind`` component called ``name``."""
    if kind not in KINDS:
        raise LlaraKitError(f"Unknown plugin kind {kind!r}; use one of: {', '.join(KINDS)}.")
    if not _NAME.match(name):
        raise LlaraKitError(
            f"Plugin name {name!r} must be lower-case letters, digits and '-', starting with "
            "a letter (it names the package, the module and the component)."
        )
    folder = Path(parent) / name
    if folder.exists():
        raise LlaraKitError(f"{str(folder)!r} already exists; choose another name or folder.")
    module = name.replace("-", "_")
    fields = {"name": name, "kind": kind, "module": module, "version": VERSION,
              "cls": "".join(p.capitalize() for p in name.split("-")), "func": module}
    fields["usage"] = USAGE[kind].format(**fields)
    (folder / "tests").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(_PYPROJECT.format(**fields))
    (folder / "README.md").write_text(_README.format(**fields))
    (folder / f"{module}.py").write_text(_MODULES[kind].format(**fields))
    (folder / "tests" / f"test_{module}.py").write_text(_TESTS[kind].format(**fields))
    return folder
