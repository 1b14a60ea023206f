"""Exceptions raised by rechub. Every message names the input, what was wrong and what to do."""

from __future__ import annotations


class RechubError(Exception):
    """Base class of every error rechub raises on purpose."""


class UnknownComponentError(RechubError, KeyError):
    """A component name that no loaded plugin registers."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(RechubError):
    """Two plugins register the same name for the same kind of component."""


class PluginNotInstalledError(RechubError, ImportError):
    """A well-known model whose plugin package is not installed."""


class LazyImportError(RechubError, ImportError):
    """A component registered lazily as ``"module:attr"`` whose module or attribute is missing."""


class InputError(RechubError, ValueError):
    """Bad user data: unknown feature, id outside the vocabulary, NaN, empty history, ..."""


class ConfigError(RechubError, ValueError):
    """A configuration file or value that cannot be used."""


class CheckpointError(RechubError):
    """A checkpoint or run folder that cannot be read or written."""
