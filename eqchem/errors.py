"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class EqchemError(Exception):
    """Base class: the message is shown to the user as is (one line, no traceback)."""

    exit_code = 2


class InputError(EqchemError):
    """A structure file or SMILES that cannot be read or is not a valid molecule."""


class BasisError(EqchemError):
    """Unknown basis name, or a basis/model mismatch."""


class ModelError(EqchemError):
    """Unreadable model file, or a structure outside what the model covers."""


class DataError(EqchemError):
    """An HDF5 data file that is missing, malformed or of another level of theory."""
