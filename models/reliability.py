"""Callbacks that keep a run safe: resumable Ctrl-C and SIGTERM, random state in checkpoints; the error of a
non-finite gradient (raised by models/training_steps.py)."""
import shlex
import signal
import sys
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from models.console import epoch_label


class NonFiniteLossError(RuntimeError):
    """The loss or a gradient became NaN or infinite; training stopped before the weights were changed by it."""


def resume_checkpoint_path(trainer):
    """Where the step-wise resume checkpoint ("last.ckpt") of this run lives, or None."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
    return None


class RandomState(pl.Callback):
    """Saves torch's global random state (dropout masks, ...) in every checkpoint and restores it on resume, so a
    resumed run draws the same random numbers as an uninterrupted one."""

    def state_dict(self):
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict):
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class GracefulInterrupt(pl.Callback):
    """Ctrl-C (SIGINT) or SIGTERM (what schedulers such as SLURM or Kubernetes send before a kill) during training:
    finish the current batch, write the resume checkpoint, print how to resume, then stop: exit status 1 after
    Ctrl-C (Lightning's own KeyboardInterrupt path), 143 = 128 + 15 after SIGTERM. A second Ctrl-C stops at once.

    Under DDP every rank takes the same path: the ranks agree (every 10th step) on whether any of them received a
    signal, all write the checkpoint together (rank 0 writes the file) and all stop after the same batch.

    Args:
        resume_command: how to resume, printed after saving; "{config}" (the run's config.yaml) and
            "{checkpoint}" are filled in, quoted for the shell. The CLI that starts the run says how (train.py
            sets it).
    """

    def __init__(self, resume_command: str = "--ckpt_path {checkpoint}"):
        self.resume_command = resume_command
        self.received = 0  # the signal received and not yet acted on (0: none)
        self.previous_handlers = {}
        self.announce = True  # print on receiving (rank 0 only)

    def _receive(self, signum, frame):
        self.received = max(self.received, signum)
        again = ""
        if signum == signal.SIGINT:  # a second Ctrl-C: the usual KeyboardInterrupt
            signal.signal(signal.SIGINT, self.previous_handlers.pop(signal.SIGINT, signal.default_int_handler))
            again = " (Ctrl-C again to stop at once)"
        if self.announce:
            print(f"\n{signal.Signals(signum).name}: stopping after this batch and saving a checkpoint{again}",
                  file=sys.stderr)

    def on_train_start(self, trainer, pl_module):
        if threading.current_thread() is not threading.main_thread():
            return
        self.announce = trainer.is_global_zero
        # NOTE: on every rank (a terminal's Ctrl-C reaches them all, a scheduler's SIGTERM may reach one). The
        # SIGTERM handler replaces Lightning's for the training loop: Lightning's broadcasts to the other ranks from
        # inside the handler, wherever each rank happens to be, and then ends the run with exit status 0.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._receive)
        self.previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._receive)

    def on_exception(self, trainer, pl_module, exception):
        self._restore()

    def _restore(self):
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)
        self.previous_handlers = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # NOTE: agreeing costs a collective, so under DDP only every 10th step
        if trainer.world_size == 1 or trainer.global_step % 10 == 0:
            self._stop_if_received(trainer, pl_module, save=True)

    def on_train_end(self, trainer, pl_module):
        # a signal after the last agreement: training has ended and only the test is left; resuming from last.ckpt
        # repeats the steps since it was written (at most every_n_train_steps), bit for bit
        self._stop_if_received(trainer, pl_module, save=False)
        self._restore()

    def _stop_if_received(self, trainer, pl_module, save):
        received = self.received
        if trainer.world_size > 1:  # the largest signal number of any rank: SIGTERM (15) over SIGINT (2)
            received = int(trainer.strategy.reduce(torch.tensor(received, device=pl_module.device), reduce_op="max"))
        if not received:
            return
        self.received = 0
        run_dir = Path(trainer.log_dir or ".")  # NOTE: on every rank: under DDP reading log_dir is a collective
        path = resume_checkpoint_path(trainer) or run_dir / "checkpoints" / "last.ckpt"
        if save:
            trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint, as ModelCheckpoint's
        if trainer.is_global_zero:
            config = run_dir / "config.yaml"
            command = self.resume_command.format(config=shlex.quote(str(config)), checkpoint=shlex.quote(str(path)))
            step = trainer.global_step
            done = f"saved {path} at step {step}" if save else f"training had ended (step {step}), not the test"
            print(f"{done}; resume with:\n  {command}", file=sys.stderr)
        if received == signal.SIGINT:
            raise KeyboardInterrupt  # Lightning: on_exception hooks, teardown, exit status 1
        raise SystemExit(128 + received)  # as a shell reports a process ended by that signal


def non_finite_error(trainer, pl_module, what, step):
    """The NonFiniteLossError for `what` going NaN/inf at global step `step`: where it happened, what was kept."""
    lr = pl_module.hparams.get("lr")
    last_good = resume_checkpoint_path(trainer)
    kept = (f"the last good checkpoint is {last_good}" if last_good and last_good.is_file()
            else "no checkpoint had been written yet")
    return NonFiniteLossError(
        f"{what} became NaN or infinite at step {step} ({' '.join(epoch_label(trainer).split())}); "  # no padding
        f"training stopped and {kept}. Likely cause: the learning rate{f' (lr={lr})' if lr else ''} is too high "
        "for this model and loss - lower it (--model.lr) or add a schedule with warm-up; else check the data "
        "for NaN or infinite values."
    )
