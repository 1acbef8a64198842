"""What happens around the training loop, as callbacks (in the manner of Keras's
`fit(callbacks=[...])`): a progress bar, a checkpoint saved after every epoch, a line per epoch,
or a user's own.

`fit` calls, on every callback in turn:

    on_train_begin(run)          before anything is compiled or trained (a Checkpoint resumes here)
    on_epoch_begin(run, epoch)   before each epoch's clock starts
    on_batches(n)                n more batches trained (each batch eagerly; a compiled epoch at once)
    on_epoch_end(run, result)    after each finite epoch: the net holds its params (an EpochResult)
    on_train_end(run)            at the end, also when training stops with an error, for every
                                 callback whose on_train_begin returned (so it can let go of what
                                 it holds: a bar, a lock)

`run` is the run in progress (`xpnet.nn.training.Run`): `net`, `backend`, `epochs` (the last one),
`n_batches` (per epoch), `config`, `state` (the TrainState), `history` (the EpochResults so far,
resumed ones included). Setting `run.stop_training = True` ends the run after the current epoch.
"""
import contextlib
import sys

from tqdm.auto import tqdm

from xpnet.errors import DataError
from xpnet.nn.checkpoint import claim_checkpoint, load_checkpoint, save_checkpoint

#: The methods fit calls, in the order a run reaches them.
HOOKS = ("on_train_begin", "on_epoch_begin", "on_batches", "on_epoch_end", "on_train_end")


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_train_begin(self, run):
        pass

    def on_epoch_begin(self, run, epoch):
        pass

    def on_batches(self, n):
        pass

    def on_epoch_end(self, run, result):
        pass

    def on_train_end(self, run):
        pass


class LambdaCallback(Callback):
    """A callback made of functions, one per hook, taking that hook's arguments:
    `LambdaCallback(on_epoch_end=lambda run, result: print(result.test_acc))`."""

    def __init__(self, **hooks):
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            raise TypeError(f"unknown callback hooks {unknown}; the hooks are {', '.join(HOOKS)}")
        for name, function in hooks.items():
            setattr(self, name, function)  # the instance's function shadows the no-op method


class ProgressBar(Callback):
    """A tqdm bar over the batches a run has left, on stderr, gone when the run ends.

    `show`: True shows it, False hides it, None shows it when stderr is a terminal. `done` and
    `total` count the batches trained and to train (whether shown or not)."""

    def __init__(self, show=None):
        self.show, self.done, self.total = show, 0, 0
        self._bar = None

    def on_train_begin(self, run):
        self.done, self.total = 0, 0

    def on_epoch_begin(self, run, epoch):
        if self._bar is None:  # the first epoch of this call: after any resume, after compiling
            self.total = (run.epochs - epoch + 1) * run.n_batches
            self._bar = tqdm(total=self.total, unit="batch", desc=f"training on {run.backend.name}",
                             disable=None if self.show is None else not self.show, file=sys.stderr,
                             leave=False, dynamic_ncols=True)

    def on_batches(self, n):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def on_train_end(self, run):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EpochLog(Callback):
    """Print a line per epoch: `line` formatted with the EpochResult's fields and `epochs` (the
    run's last epoch), e.g. "epoch {epoch}/{epochs}: test acc {test_acc:.4f}". Written through
    tqdm so a progress bar stays intact; `file` defaults to stdout."""

    def __init__(self, line, file=None):
        self.line, self.file = line, file

    def on_epoch_end(self, run, result):
        tqdm.write(self.line.format(**result._asdict(), epochs=run.epochs), file=self.file)


class Checkpoint(Callback):
    """Save the run to `path` (.npz) after every epoch; with `resume`, continue the run saved there.

    At the start the path is claimed (`claim_checkpoint`): refused at once if it is in use by
    another run, not ours to replace (an existing checkpoint is kept unless `resume` or
    `overwrite`; a file that is not a checkpoint never is) or unwritable, and held until the run
    ends. Resuming loads the state and history saved there into the run (the run's `config` must
    match the saved one), so the run goes on from the epoch after the saved one."""

    def __init__(self, path, resume=False, overwrite=False):
        self.path, self.resume, self.overwrite = path, resume, overwrite
        self._held = None

    def on_train_begin(self, run):
        with contextlib.ExitStack() as stack:  # a failed resume lets go of the claim at once
            stack.enter_context(claim_checkpoint(self.path, resume=self.resume, overwrite=self.overwrite))
            if self.resume:
                state, meta = load_checkpoint(self.path, run.state, run.backend, run.config)
                try:
                    run.restore(state, meta["history"])
                except TypeError as exc:
                    raise DataError(f"{self.path}: damaged checkpoint metadata: history: {exc}") from None
            self._held = stack.pop_all()

    def on_epoch_end(self, run, result):
        save_checkpoint(self.path, run.state, {"epoch": result.epoch, "config": run.config,
                                               "history": [r._asdict() for r in run.history]})

    def on_train_end(self, run):
        if self._held is not None:
            held, self._held = self._held, None
            held.close()
