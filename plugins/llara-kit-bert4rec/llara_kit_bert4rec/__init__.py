"""llara-kit plugin: the ``bert4rec`` encoder (model in ``llara_kit_bert4rec.model``)."""

from importlib import metadata

from llara_kit import hookimpl

__version__ = metadata.version("llara-kit-bert4rec")


@hookimpl
def register_encoders(register):
    register("bert4rec", "llara_kit_bert4rec.model:BERT4Rec",
             description="BERT4Rec: bidirectional, masked-item pre-training (Sun et al. 2019)")
