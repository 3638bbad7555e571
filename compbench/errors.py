"""Exceptions that carry a one-line, user-facing message.

The CLI prints ``str(err)`` of any :class:`CompbenchError` as ``Error: ...`` and exits 1,
so every message here must make sense to a user on its own, without a traceback.
"""


class CompbenchError(Exception):
    """Base class: a problem the user can act on (bad input, missing data, wrong artifact)."""


class SpecError(CompbenchError, ValueError):
    """A coder spec such as ``zstd:level=99`` is malformed or names an unknown coder/option."""


class RegistryError(CompbenchError):
    """Two coders claim one name, or a plug-in failed to load."""


class PayloadError(CompbenchError):
    """A payload cannot be decoded: truncated, corrupted, unknown version, wrong artifact."""


class ArtifactError(PayloadError):
    """The artifact given to a decoder is not the one the payload was made with."""


class CorpusError(CompbenchError):
    """A corpus cannot be found or read."""


class FetchError(CompbenchError):
    """A download failed (offline, bad checksum, no publisher source)."""


class StoreError(CompbenchError):
    """The results store cannot be read or written."""
