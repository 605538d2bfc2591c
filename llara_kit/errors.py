"""Errors a user can act on. The CLI prints their message as one sentence, no traceback."""


class LlaraKitError(Exception):
    """Base class: the message says what was wrong and what to do."""


class PluginError(LlaraKitError):
    """A plugin is malformed, clashes with another, or cannot be loaded."""


class UnknownComponentError(LlaraKitError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
