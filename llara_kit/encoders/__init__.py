"""Sequence encoders: the contract (base.py) and the built-in plugins."""

from llara_kit.encoders.base import Encoder, EncoderConfig, load_encoder

__all__ = ["Encoder", "EncoderConfig", "load_encoder"]
