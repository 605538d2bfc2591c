"""A custom sequence encoder in a few lines, checked against the encoder contract.

    .venv/bin/python examples/custom_encoder.py

Packaged with a `llara_kit` entry point (see plugins/llara-kit-lowrank), it would load
automatically; here it is registered at run time.
"""

import sys
import tempfile

from llara_kit import hookimpl, register_plugin
from llara_kit.contracts import check_encoder
from llara_kit.encoders import Encoder


class MeanPool(Encoder):
    """The user state is the mean of the history's item embeddings."""

    name = "meanpool"

    def encode(self, seq, lengths):  # (B, L), (B,) -> (B, d)
        mask = (seq.new_ones(seq.shape).cumsum(1) <= lengths[:, None]).unsqueeze(-1)
        return (self.item_embedding(seq) * mask).sum(1) / lengths[:, None]


@hookimpl
def register_encoders(register):
    register("meanpool", MeanPool, description="mean of history embeddings")


if __name__ == "__main__":
    register_plugin(sys.modules[__name__], "meanpool-example")
    with tempfile.TemporaryDirectory() as tmp:
        check_encoder("meanpool", tmp)
    print("meanpool passes the encoder contract; try: llara_kit.encoders.pretrain.pretrain_encoder("
          "'meanpool', data)")
