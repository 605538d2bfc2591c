"""The installed distribution's version, read from its metadata (one source: pyproject)."""

from importlib import metadata

try:
    VERSION = metadata.version("llara-kit")
except metadata.PackageNotFoundError:  # a source tree on sys.path without installing
    VERSION = "0+unknown"
