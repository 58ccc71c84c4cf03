"""Callbacks that keep a run safe: resumable Ctrl-C, random state in checkpoints, and a stop on non-finite loss."""
import signal
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint


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
    """Ctrl-C (SIGINT) during training: finish the current batch, write the resume checkpoint, print how to resume,
    then stop as Lightning stops on KeyboardInterrupt. A second Ctrl-C interrupts at once.

    Args:
        resume_command: how to resume, printed after saving; "{config}" (the run's config.yaml) and
            "{checkpoint}" are filled in. The CLI that starts the run says how (train.py sets it).
    """

    def __init__(self, resume_command: str = "--ckpt_path {checkpoint}"):
        self.resume_command = resume_command
        self.requested = False
        self.previous_handler = None

    def _request(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous_handler)  # a second Ctrl-C: the usual KeyboardInterrupt
        print("\nCtrl-C: stopping after this batch and saving a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr)

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous_handler = signal.signal(signal.SIGINT, self._request)

    def on_train_end(self, trainer, pl_module):
        self._restore()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()

    def _restore(self):
        if self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        requested = self.requested
        if trainer.world_size > 1:
            # every rank must stop at the same batch; NOTE: agreeing costs a collective, so only every 10th step
            if trainer.global_step % 10:
                return
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        path = resume_checkpoint_path(trainer) or Path(trainer.log_dir or ".") / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            config = Path(trainer.log_dir or ".") / "config.yaml"
            command = self.resume_command.format(config=config, checkpoint=path)
            print(f"saved {path} at step {trainer.global_step}; resume with:\n  {command}", file=sys.stderr)
        raise KeyboardInterrupt


class StopOnNonFinite(pl.Callback):
    """Stops training at the first NaN or infinite gradient or loss, before the optimizer applies it, so every
    checkpoint on disk holds finite weights. The error names the step and the likely cause.

    NOTE: runs on every step, replayed (CUDA graph) or eager; on CUDA reading the flag synchronises once a step.
    """

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            raise non_finite_error(trainer, pl_module, "the gradient", trainer.global_step)


def non_finite_error(trainer, pl_module, what, step):
    """The NonFiniteLossError for `what` going NaN/inf at global step `step`: where it happened, what was kept."""
    lr = pl_module.hparams.get("lr")
    last_good = resume_checkpoint_path(trainer)
    kept = (f"the last good checkpoint is {last_good}" if last_good and last_good.is_file()
            else "no checkpoint had been written yet")
    return NonFiniteLossError(
        f"{what} became NaN or infinite at step {step} (epoch {trainer.current_epoch}); "
        f"training stopped and {kept}. Likely cause: the learning rate{f' (lr={lr})' if lr else ''} is too high "
        "for this model and loss - lower it (--model.lr) or add a schedule with warm-up; else check the data "
        "for NaN or infinite values."
    )
