"""The whole training step as one function on fixed buffers: on CUDA captured once as a CUDA graph and replayed.

Forward, the handwritten backward, the optimizer step and the epoch's metric sums run on tensors that never move;
each batch is copied into them. On the CPU the function is simply called, which skips Lightning's per-step closure
and hook dispatch. On CUDA it is captured once in a CUDA graph and every later step is one replay: no Python per
layer, no gaps between kernel launches, no host-device synchronisation.

Non-finite values never reach the weights: the step computes bad = (loss or gradient norm not finite) and hands
the fused optimizer a sticky `found_inf` (as torch.amp.GradScaler does), so from the first bad step on the update
is skipped on the device; the host reads the step number when it next synchronises anyway and stops there.
"""
import warnings

import torch

# Hyperparameters a captured graph bakes in; only "lr" is read from a device tensor on every replay.
LR_KEY = "lr"


def add_training_sums(sums, loss, scores, labels):
    """sums (3,) += [loss·B, correct, B] of one batch, on the device (no host copy: capturable)."""
    count = labels.numel()
    correct = (scores.argmax(dim=-1) == labels).sum().to(sums.dtype)
    sums.add_(torch.stack([loss.detach() * count, correct, torch.full_like(correct, count)]))


class FastTrainStep:
    """One training step of `net` + `loss_fn` + `optimizer` on static buffers shaped like the first batch.

    Args:
        net: maps images (B, ...) to scores (B, C).
        loss_fn: (scores (B, C), labels (B,)) -> scalar loss.
        optimizer: a fused torch optimizer (its `found_inf` is how non-finite steps are skipped).
        sums: float tensor (3,) that each step adds [loss·B, correct, B] to (the epoch's training metrics).
        images, labels: the first batch; fixes the static shapes.
        use_graph: capture a CUDA graph (CUDA only); else run the same function eagerly.
    """

    def __init__(self, net, loss_fn, optimizer, sums, images, labels, use_graph):
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise ValueError(f"the fast step needs a fused optimizer (fused=True), got {type(optimizer).__name__} "
                             "with fused=False")
        if use_graph and not images.is_cuda:
            raise ValueError(f"a CUDA graph needs the batch on a CUDA device, got images on {images.device}")
        self.net, self.loss_fn, self.optimizer, self.sums = net, loss_fn, optimizer, sums
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.images, self.labels = torch.empty_like(images), torch.empty_like(labels)  # static inputs
        device = images.device
        self.skip = torch.zeros((), device=device)  # the optimizer's found_inf: 1 from the first bad step on
        self.step_number = torch.zeros((), dtype=torch.long, device=device)  # this step's global step
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)  # the last step's loss (static output)
        self.use_graph, self.graph, self.warm = use_graph, None, False
        self.lrs = [torch.zeros((), device=device) for _ in optimizer.param_groups]  # read by the graph
        self.baked = None  # the other hyperparameters as captured

    def fits(self, images, labels):
        return images.shape == self.images.shape and labels.shape == self.labels.shape

    def __call__(self, images, labels, step_number):
        """Train on one batch (shapes as the first); step_number is the trainer's global step (for errors)."""
        self.images.copy_(images)
        self.labels.copy_(labels)
        self.step_number.fill_(step_number)
        if not self.use_graph:
            self._step()
        elif self.graph is not None and self._hyperparameters() == self.baked:
            for lr, group in zip(self.lrs, self.optimizer.param_groups):
                lr.fill_(group[LR_KEY])
            self.graph.replay()
        elif self.graph is not None:  # a scheduler changed a baked-in value (momentum, betas, ...): stay eager
            changed = sorted({key for now, then in zip(self._hyperparameters(), self.baked)
                              for key in now if now[key] != then.get(key)})
            self.use_graph, self.graph = False, None
            warnings.warn(f"optimizer hyperparameter(s) {changed} changed after the CUDA graph was captured; "
                          "training goes on without the graph (only 'lr' may change between replays)")
            self._step()
        elif not self.warm:
            self._warm_up()
        else:
            self._capture()

    def first_non_finite_step(self):
        """The global step of the first NaN/inf loss or gradient, or None (reading it synchronises)."""
        step = int(self.first_bad_step)
        return None if step < 0 else step

    def _step(self):
        self.optimizer.zero_grad(set_to_none=True)
        scores = self.net(self.images)  # (B, C)
        loss = self.loss_fn(scores, self.labels)
        loss.backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        bad = ~(torch.isfinite(loss) & torch.isfinite(norm))
        self.first_bad_step.copy_(torch.where(bad & (self.first_bad_step < 0), self.step_number, self.first_bad_step))
        self.skip.copy_(torch.maximum(self.skip, bad.to(self.skip.dtype)))
        self.optimizer.found_inf = self.skip  # NOTE: how GradScaler tells a fused optimizer to skip a step
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf
        add_training_sums(self.sums, loss, scores, self.labels)
        self.loss.copy_(loss.detach())

    def _hyperparameters(self):
        return [{key: value for key, value in group.items() if key not in ("params", LR_KEY)}
                for group in self.optimizer.param_groups]

    def _with_device_lrs(self, run):
        """Run with each group's lr replaced by its device tensor, so the graph reads the lr of each replay."""
        floats = [group[LR_KEY] for group in self.optimizer.param_groups]
        for lr, group, value in zip(self.lrs, self.optimizer.param_groups, floats):
            lr.fill_(value)
            group[LR_KEY] = lr
        try:
            run()
        finally:
            for group, value in zip(self.optimizer.param_groups, floats):
                group[LR_KEY] = value

    def _warm_up(self):
        # NOTE: as torch.cuda.graphs recommends, one real step on a side stream first (lazy initialisation of
        # kernels, the allocator and the tensor-lr path stays out of the capture); it trains on this batch.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._with_device_lrs(self._step)
        torch.cuda.current_stream().wait_stream(side)
        self.warm = True

    def _capture(self):
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates .grad in the graph's pool

        def capture():
            with torch.cuda.graph(graph):
                self._step()
        self._with_device_lrs(capture)
        self.graph, self.baked = graph, self._hyperparameters()
        graph.replay()  # capturing ran nothing: this is the step on the current batch
