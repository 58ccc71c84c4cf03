"""How a training step runs fast, in one place: a callback around the LightningModule's own training_step.

Everything here keeps the host from waiting for the device, so that on a GPU the host can run ahead of the kernels:

- capture and replay: on one CUDA device in 32-bit precision without gradient accumulation, the module's forward
  (and with it its backward) is a CUDA graph (torch.cuda.make_graphed_callables) from the first full training batch
  on, replayed for every batch of that shape; any other batch (a smaller last batch), validation and test run
  eagerly.
- the metric sums: the epoch's Σ loss·B and correct digits summed on the device, in a few kernels for up to
  FOLD_STEPS steps at once (none a step), logged at the epoch's last batch; the step's loss every log_every_n_steps.
- the non-finite test: one kernel sets a sticky flag at the first NaN or infinite gradient; on a GPU the flag stays
  on the device, the fused optimizer skips every update from that step on, and the host reads it every
  log_every_n_steps and at the epoch's last step.

The `cuda_graph` argument (false) turns the capture off; nothing else changes (the same sums, the same test).
"""
import logging

import pytorch_lightning as pl
import torch

from models.reliability import non_finite_error
from models.step_scalars import on_interval, write_scalars

log = logging.getLogger(__name__)
# the steps whose losses and predictions are held before they are summed, in a few kernels for all of them
FOLD_STEPS = 64


def can_capture(device, world_size, precision, accumulate_grad_batches=1):
    """Whether a run's steps can be a CUDA graph: on CUDA, in one process (DDP's gradient all-reduce runs inside
    the backward), in 32-bit precision (autocast and a gradient scaler act between the captured kernels) and without
    gradient accumulation (each replay writes the gradients into the same graph memory)."""
    return (torch.device(device).type == "cuda" and world_size == 1 and str(precision) in ("32-true", "32")
            and accumulate_grad_batches == 1)


def graph_forward(module, images):
    """Make `module`'s forward (and its backward) a CUDA graph for batches of `images`' shape in training mode; any
    other batch, and eval mode, run the module's own forward. Undone by `eager_forward`.

    The forward returns the graph's own output memory: call it once per step, before the backward (a second call in
    training mode replays the graph again, over the activations the backward needs).

    The graph is captured after three warm-up passes on `images` (torch.cuda.make_graphed_callables); their updates
    of buffers (a batch norm's running statistics) are undone, so the first replay is the first step's update. Their
    dropout masks are drawn from the generator all the same: with dropout, a run that captures again after a resume
    draws other masks than one that went on.
    """
    buffers = [buffer.clone() for buffer in module.buffers()]
    images = images.clone()  # NOTE: the graph's input buffer, into which every replay copies its batch
    # NOTE: torch captures on streams of its own and keeps the parameters' AccumulateGrad nodes made there, so the
    # gradients cross streams (an event a stream waits for, no host wait); torch 2.11 warns of that mismatch inside
    # make_graphed_callables already: quiet from before it until eager_forward puts the setting back
    warned = stream_mismatch_warning()
    set_stream_mismatch_warning(False)
    try:
        make_graphed = torch.cuda.make_graphed_callables(module, (images,))
    except BaseException:
        set_stream_mismatch_warning(warned)
        raise
    with torch.no_grad():
        for buffer, saved in zip(module.buffers(), buffers):
            buffer.copy_(saved)
    graphed = make_graphed.forward  # NOTE: torch sets the graphed forward on the module itself
    eager = type(module).forward.__get__(module)
    shape = images.shape

    def forward(batch):
        return graphed(batch) if batch.shape == shape else eager(batch)
    forward.stream_mismatch_warning = warned
    module.forward = forward


def eager_forward(module):
    """Undo `graph_forward`: the module's forward is its class's again."""
    forward = module.__dict__.pop("forward", None)
    set_stream_mismatch_warning(getattr(forward, "stream_mismatch_warning", None))


def stream_mismatch_warning():
    """Whether torch warns of gradients that cross streams on their way to a parameter (True: its default)."""
    getter = getattr(torch._C, "_warn_on_accumulate_grad_stream_mismatch", None)  # NOTE: not in every torch
    return True if getter is None else getter()


def set_stream_mismatch_warning(enabled):
    """Turn that warning on or off where torch has it; None leaves it as it is (a forward not graph_forward's)."""
    setter = getattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch", None)
    if setter is not None and enabled is not None:
        setter(enabled)


class TrainingSteps(pl.Callback):
    """The fast path of every training step: CUDA graph replays, the epoch's sums on the device, the NaN stop.

    See the module docstring: CUDA graph capture and replay, the epoch's loss and accuracy summed on the device, and
    the stop at the first non-finite gradient.

    When the module's training_step returns {"loss": loss, "preds": (B,) predicted classes}, this callback logs
    `loss/train` and `acc/train` (epoch means over all its digits) and `steps/loss`; the forward made a graph is
    the module's own (`self(inputs)` on the batch's first element), captured at the first full training batch.

    Args:
        cuda_graph: on one CUDA device in 32-bit precision without gradient accumulation, replay the module's
            forward and backward as CUDA graphs; false: every step eagerly (the same numbers up to the order of
            floating-point sums).
    """

    def __init__(self, cuda_graph: bool = True):
        self.cuda_graph = cuda_graph
        self.graphed = None  # the module whose forward is a graph, while it is
        self.capture = False  # whether this fit's steps become a graph (decided at its start)
        self.loss_sum = self.correct = None  # this epoch's Σ loss·B (float32) and correct digits, on the device
        self.digits = 0  # ... and its digits
        self.pending = []  # (loss, predictions, labels) of the steps not yet in those sums, all of one batch size
        self.steps_seen = 0  # global_step at the last batch's end
        self.found_inf = None  # the sticky flag: 1.0 from the first non-finite gradient on
        self.one = None  # the scale the check multiplies every gradient by
        self.flagged_steps = None  # on a GPU: how many steps saw the flag set, which dates the first one

    # capture and replay

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # NOTE: not on an epoch's last batch, which may be smaller (a run resumed there): the graph is for one shape
        if self.capture and self.graphed is None and not trainer.is_last_batch:
            graph_forward(pl_module, batch[0])
            self.graphed = pl_module
            log.info("training steps: the forward and backward as CUDA graph replays")

    def teardown(self, trainer, pl_module, stage):
        if self.graphed is not None:
            eager_forward(self.graphed)
            self.graphed = None

    def on_exception(self, trainer, pl_module, exception):
        self.teardown(trainer, pl_module, "fit")  # NOTE: Lightning tears callbacks down only after a fit that ended

    # the metric sums

    def on_train_start(self, trainer, pl_module):
        self.capture = self.cuda_graph and can_capture(pl_module.device, trainer.world_size, trainer.precision,
                                                       trainer.accumulate_grad_batches)
        self.steps_seen = trainer.global_step
        self.on_train_epoch_start(trainer, pl_module)  # NOTE: resumed mid-epoch, no epoch starts: sums from there

    def on_train_epoch_start(self, trainer, pl_module):
        # NOTE: the loss sum in float32 whatever the training precision, the count in integers (bfloat16 holds whole
        # numbers exactly only up to 256)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=pl_module.device)
        self.correct = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self.digits = 0
        self.pending = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # NOTE: global_step counts the optimizer steps done: it moved on this batch unless the batch only accumulated
        # a gradient; step is the one done last. Read once: it is a chain of properties through Lightning's loops.
        global_step = trainer.global_step
        stepped, self.steps_seen = global_step != self.steps_seen, global_step
        last = trainer.is_last_batch or global_step == trainer.max_steps  # the epoch's last step
        step = global_step - 1
        log_step = stepped and on_interval(step, trainer.log_every_n_steps)
        if self.flagged_steps is not None and (last or log_step):
            self._raise_if_flagged(trainer, pl_module)
        if not isinstance(outputs, dict) or "preds" not in outputs:
            return  # NOTE: a module that returns no predictions logs its training metrics itself
        # NOTE: with gradient accumulation Lightning hands back the loss divided by the batches accumulated
        loss, labels = outputs["loss"].detach(), batch[1]
        if trainer.accumulate_grad_batches != 1:
            loss = loss * trainer.accumulate_grad_batches
        self.add_step(loss, outputs["preds"], labels)
        if log_step:
            write_scalars(trainer, {"steps/loss": loss}, step)
        if last:
            self._fold_pending()
            # NOTE: logged in the last batch, not in on_train_epoch_end, so that every callback's on_train_epoch_end
            # (the epoch line) sees them; summed over the processes under DDP
            sums = torch.stack([self.loss_sum, self.correct.float(), torch.full_like(self.loss_sum, self.digits)])
            loss_sum, correct, total = trainer.strategy.reduce(sums, reduce_op="sum")
            pl_module.log_dict({"loss/train": loss_sum / total, "acc/train": correct / total}, on_step=False,
                               on_epoch=True)

    def add_step(self, loss, preds, labels):
        """One step's detached loss, (B,) predicted classes and (B,) labels, held for the epoch's sums and added to
        them every FOLD_STEPS steps (and before a batch of another size: a fold weighs every step by one size)."""
        if self.pending and len(labels) != len(self.pending[0][2]):
            self._fold_pending()
        self.pending.append((loss, preds, labels))  # NOTE: new tensors each step, none a graph's memory
        if len(self.pending) == FOLD_STEPS:
            self._fold_pending()

    def _fold_pending(self):
        """Add the pending steps (if any) to the epoch's sums: a few kernels for up to FOLD_STEPS steps, no host read.
        """
        if not self.pending:
            return
        losses, preds, labels = zip(*self.pending)
        batch_size = len(labels[0])
        # NOTE: Σ loss·B = B·Σ loss; summed in float32 whatever the training precision (float16's sum of loss·B
        # overflows at 65504)
        self.loss_sum.add_(torch.stack(losses).float().sum(), alpha=batch_size)
        self.correct.add_((torch.cat(preds) == torch.cat(labels)).sum())
        self.digits += batch_size * len(labels)
        self.pending = []

    # the non-finite test

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # NOTE: the gradients this optimizer steps with (a list walk; module.parameters() walks the module tree)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        device = grads[0].device
        if self.found_inf is None or self.found_inf.device != device:
            # NOTE: float32 whatever torch's default dtype: the check takes float32 flags only
            self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
            self.one = torch.ones((), dtype=torch.float32, device=device)
        # NOTE: an elementwise test in each gradient's own dtype (no sum that could overflow float16), the one of
        # torch.amp.GradScaler with a scale of 1, which leaves every value as it was
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found_inf, self.one)
        if device.type != "cuda" or not all(group.get("fused") for group in optimizer.param_groups):
            if self.found_inf.item():  # NOTE: on the CPU a read of memory, not a wait
                self.found_inf.zero_()
                raise non_finite_error(trainer, pl_module, "the gradient", trainer.global_step)
            return
        if self.flagged_steps is None:
            self.flagged_steps = torch.zeros((), dtype=torch.long, device=device)
        self.flagged_steps.add_(self.found_inf.long())
        optimizer.found_inf = self.found_inf  # NOTE: read by the fused step (as GradScaler hands it), which skips

    def on_train_end(self, trainer, pl_module):
        if self.flagged_steps is not None:
            self._raise_if_flagged(trainer, pl_module)
        for optimizer in trainer.optimizers:
            if hasattr(optimizer, "found_inf"):
                del optimizer.found_inf

    def _raise_if_flagged(self, trainer, pl_module):
        flagged = int(self.flagged_steps)  # NOTE: the one host read, every log_every_n_steps and at an epoch's end
        if flagged:
            # the flag was set on the last `flagged` steps done: the first of them is step global_step − flagged
            raise non_finite_error(trainer, pl_module, "the gradient", trainer.global_step - flagged)
