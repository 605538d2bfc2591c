"""Data sets, the LLaRA protocol and prepared (cached) data."""

from llara_kit.data.prepared import PreparedData, Split, prepare_data, target_positions
from llara_kit.data.raw import DataError, RawData
from llara_kit.data.settings import DataSettings

__all__ = ["DataError", "DataSettings", "PreparedData", "RawData", "Split", "prepare_data",
           "target_positions"]
