"""The exceptions xpnet raises for problems a user can fix (the CLI prints them as one line)."""


class XpnetError(Exception):
    """Base class: a problem with the user's request, environment or data, not a bug in xpnet."""


class BackendError(XpnetError):
    """An unknown backend was asked for, or one that cannot run on this machine."""


class DataError(XpnetError):
    """A data set is missing, corrupt, or holds values the model cannot use."""


class ConfigError(XpnetError, ValueError):
    """A setting out of its range: a learning rate, a size, a seed, a dtype... (a ValueError too,
    as NumPy and the standard library raise for a bad argument)."""


class DivergedError(XpnetError):
    """Training produced a non-finite loss (NaN or ±inf), most often a learning rate too high.

    `epoch` and `batch` (1-based) say where; `history` holds the EpochResults of the epochs that
    ended finite (the net keeps the params of the last of them, and so does its checkpoint)."""

    def __init__(self, epoch, batch, loss, history):
        super().__init__(f"training diverged: the loss became {loss} at epoch {epoch}, batch "
                         f"{batch}; lower the learning rate (--lr)")
        self.epoch, self.batch, self.loss, self.history = epoch, batch, loss, history
