"""The exceptions xpnet raises for problems a user can fix (the CLI prints them as one line)."""


class XpnetError(Exception):
    """Base class: a problem with the user's request, environment or data, not a bug in xpnet."""


class BackendError(XpnetError):
    """An unknown backend was asked for, or one that cannot run on this machine."""


class DataError(XpnetError):
    """A data set is missing, corrupt, or holds values the model cannot use."""
