"""CallbackGroup (models/callback_group.py): its members see every hook they override, in the same order and with the
same arguments as when listed alone, nothing else is called, and their checkpoint state survives a resume."""
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

from models.callback_group import CallbackGroup, each_callback
from tests.helpers import fit


class Records(pl.Callback):
    """Writes (name, hook, what it was called with) to a shared list, from the hooks of a few kinds it overrides."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def setup(self, trainer, pl_module, stage):
        self.calls.append((self.name, "setup", stage))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.calls.append((self.name, "on_train_batch_start", batch_idx, len(batch[1])))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls.append((self.name, "on_before_optimizer_step", trainer.global_step))


class RecordsBatchEnds(Records):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls.append((self.name, "on_train_batch_end", batch_idx, round(float(outputs["loss"]), 6)))


class Counts(pl.Callback):
    """A callback with checkpoint state: the training steps it has seen, over resumes."""

    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state_dict):
        self.steps = state_dict["steps"]


def test_members_see_the_hooks_they_override_as_when_listed_alone(mnist_slice):
    listed, grouped = [], []
    fit(mnist_slice, {"hidden_sizes": (8,)}, [Records("a", listed), RecordsBatchEnds("b", listed)], max_steps=3,
        limit_val_batches=0)
    fit(mnist_slice, {"hidden_sizes": (8,)}, [CallbackGroup([Records("a", grouped), RecordsBatchEnds("b", grouped)])],
        max_steps=3, limit_val_batches=0)
    assert len(listed) == 1 + 3 * 3 + 3 * 2 + 1  # setup of a and b, 3 hooks of b and 2 of a on each of 3 steps
    assert grouped == listed


def test_a_member_is_called_only_for_the_hooks_it_overrides():
    group = CallbackGroup([Records("a", []), pl.Callback(), RecordsBatchEnds("b", [])])
    a, _, b = group.callbacks
    assert group.hooks["on_train_batch_start"] == [a.on_train_batch_start, b.on_train_batch_start]
    assert group.hooks["on_train_batch_end"] == [b.on_train_batch_end]
    assert group.hooks["on_before_backward"] == group.hooks["on_after_backward"] == []


def test_around_leaves_the_callbacks_lightning_finds_by_type_in_the_list():
    checkpoint, bar, first, second = ModelCheckpoint(), TQDMProgressBar(), Counts(), Counts()
    callbacks = CallbackGroup.around([checkpoint, first, bar, second])
    assert callbacks[0] is checkpoint and isinstance(callbacks[1], CallbackGroup) and callbacks[2] is bar
    assert callbacks[1].callbacks == [first, second]
    trainer = pl.Trainer(callbacks=callbacks, logger=False, enable_model_summary=False)
    assert trainer.checkpoint_callback is checkpoint and trainer.progress_bar_callback is bar  # Lightning finds them
    assert [callback for callback in each_callback(trainer) if isinstance(callback, Counts)] == [first, second]


def test_a_members_state_survives_a_resume_grouped_or_not(mnist_slice, tmp_path):
    for grouped_before in (True, False):
        counts = Counts()
        trainer, _, _ = fit(mnist_slice, {"hidden_sizes": (8,)}, [CallbackGroup([counts, pl.Callback()])]
                            if grouped_before else [counts], max_steps=3, limit_val_batches=0)
        path = tmp_path / f"grouped_{grouped_before}.ckpt"
        trainer.save_checkpoint(path)
        resumed = Counts()
        fit(mnist_slice, {"hidden_sizes": (8,)}, [CallbackGroup([resumed, pl.Callback()])], max_steps=5,
            limit_val_batches=0, ckpt_path=str(path))
        assert (counts.steps, resumed.steps) == (3, 5)  # 3 steps before the checkpoint, 2 after it


class LogsItsStep(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.log("steps/seen", float(trainer.global_step))


def test_a_member_logs_as_a_callback_listed_alone(mnist_slice):
    trainer, _, _ = fit(mnist_slice, {"hidden_sizes": (8,)}, [CallbackGroup([LogsItsStep(), pl.Callback()])],
                        max_steps=3, limit_val_batches=0)
    assert float(trainer.callback_metrics["steps/seen"]) == 3.0
