"""Many callbacks behind one: Lightning's per-step cost of a callback paid once, not once per callback and hook.

On every training step Lightning calls six hooks (on_train_batch_start, on_before_backward, on_after_backward,
on_before_zero_grad, on_before_optimizer_step, on_train_batch_end) of every callback, whether it overrides them or
not, each through a profiler context and the callback's state_key: a few µs a call, for each of train.py's 14
callbacks, where a small network's whole step on a GPU takes a fraction of a millisecond. A CallbackGroup is one
callback to Lightning and calls, for each hook, only its members that override it.
"""
import inspect

import pytorch_lightning as pl
from pytorch_lightning.callbacks import (BasePredictionWriter, BatchSizeFinder, Checkpoint, EarlyStopping,
                                         LearningRateFinder, ProgressBar, Timer)

# the hooks a member may override (all of pl.Callback's but setup and the checkpoint state, which the group calls
# itself)
HOOKS = tuple(name for name, value in vars(pl.Callback).items()
              if inspect.isfunction(value) and (name.startswith("on_") or name == "teardown")
              and name not in ("on_save_checkpoint", "on_load_checkpoint"))
# callbacks Lightning looks up by their type in trainer.callbacks while it trains: left where they are. NOTE: not
# ModelSummary, which Lightning looks for while it makes the Trainer (to add its own), and otherwise only to let a
# model's `configure_callbacks` replace a trainer callback of its type (no model here has one; a grouped member is
# not replaced but joined): train.py groups the callbacks of a Trainer already made, so its model summary and
# LightningCLI's SaveConfigCallback, which act once (at the fit's start, in setup), do not cost every step a round of
# Lightning's hook calls
FOUND_BY_TYPE = (Checkpoint, EarlyStopping, ProgressBar, Timer, BasePredictionWriter, BatchSizeFinder,
                 LearningRateFinder)


def overrides(callback, hook):
    return getattr(type(callback), hook) is not getattr(pl.Callback, hook)


class CallbackGroup(pl.Callback):
    """Calls each hook of its members that overrides it, in the members' order. Each member's checkpoint state is
    kept under the member's own state_key inside the group's (a checkpoint written with the members listed one by
    one loads too). Members can log (`self.log`) as callbacks listed alone can."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        self._index_hooks()

    def _index_hooks(self):
        self.hooks = {hook: [getattr(member, hook) for member in self.callbacks if overrides(member, hook)]
                      for hook in HOOKS}

    @classmethod
    def around(cls, callbacks):
        """`callbacks` with every one that Lightning does not look up by type while it trains gathered into one
        group, at the place of the first of them: a made Trainer's callbacks (see FOUND_BY_TYPE)."""
        members = [callback for callback in callbacks if not isinstance(callback, FOUND_BY_TYPE + (cls,))]
        if len(members) < 2:
            return list(callbacks)
        first = callbacks.index(members[0])
        rest = [callback for callback in callbacks if callback not in members]
        return rest[:first] + [cls(members)] + rest[first:]

    def remove(self, predicate):
        """Take the members for which predicate(member) is true out of the group."""
        self.callbacks = [member for member in self.callbacks if not predicate(member)]
        self._index_hooks()

    def setup(self, trainer, pl_module, stage):
        for member in list(self.callbacks):
            member.log, member.log_dict = pl_module.log, pl_module.log_dict  # NOTE: as Lightning gives its callbacks
            member.setup(trainer, pl_module, stage)

    def state_dict(self):
        return {member.state_key: state for member in self.callbacks if (state := member.state_dict())}

    def load_state_dict(self, state_dict):
        for member in self.callbacks:
            if member.state_key in state_dict:
                member.load_state_dict(state_dict[member.state_key])

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        for member in self.callbacks:
            member.on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("callbacks") or {}
        for member in self.callbacks:
            member.on_load_checkpoint(trainer, pl_module, checkpoint)
            if member.state_key in states:  # NOTE: a checkpoint of a run whose callbacks were listed one by one
                member.load_state_dict(states[member.state_key])


def each_callback(trainer):
    """Every callback of the trainer, the members of its groups among them."""
    for callback in trainer.callbacks:
        yield from callback.callbacks if isinstance(callback, CallbackGroup) else (callback,)


def _calls_members(hook):
    def call(self, *args, **kwargs):
        for member_hook in self.hooks[hook]:
            member_hook(*args, **kwargs)
    call.__name__ = call.__qualname__ = hook
    return call


for _hook in HOOKS:
    setattr(CallbackGroup, _hook, _calls_members(_hook))
