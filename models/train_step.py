"""Forward, loss and handwritten backward of one training batch; on CUDA captured once as a CUDA graph and replayed.

MNISTClassifier calls `TrainStep` once per batch and then steps the optimizer through Lightning, so everything
from `on_before_optimizer_step` on (gradient statistics, the non-finite check, the fused optimizer, the step counter,
checkpoints) is Lightning's own and runs on every step; only the work that dominates a small network's step, the
Python of every layer and ~40 small kernel launches (the batch's metric sums among them), becomes one graph replay.
"""
import torch


def can_capture(device, world_size, precision):
    """Whether a run's steps can be a CUDA graph: on CUDA, in one process (DDP's gradient all-reduce runs inside
    the backward) and in 32-bit precision (autocast and a gradient scaler act between the captured kernels)."""
    return torch.device(device).type == "cuda" and world_size == 1 and str(precision) in ("32-true", "32")


class TrainStep:
    """`loss, metrics = step(images, labels)`: the forward pass, and the .grad of every parameter filled.

    Args:
        loss_fn: (images, labels) -> (loss, metrics), the forward pass: the loss to differentiate, and a tensor of
            values computed from the batch that the caller wants back (the module's loss and accuracy sums).
        backward: how an eager step runs backward (Lightning's `manual_backward`, with its hooks).
        parameters: the parameters whose gradients the step computes.
        capture: replay a CUDA graph (CUDA only). The first call runs eagerly on a side stream (warm-up, as
            torch.cuda.graphs advises), the second captures forward + backward on static input buffers, and every
            later batch of the first batch's shape is copied in and replayed. A batch of another shape (a smaller
            last batch) runs eagerly. on_before_backward / on_after_backward hooks run on eager steps only.
    """

    def __init__(self, loss_fn, backward, parameters, capture):
        self.loss_fn, self.backward, self.capture = loss_fn, backward, capture
        self.parameters = list(parameters)
        self.graph, self.warmed_up = None, False
        self.images = self.labels = self.outputs = self.grads = None  # the graph's static tensors

    def __call__(self, images, labels):
        if not self.capture:
            return self._eager(images, labels)
        if self.graph is not None and images.shape == self.images.shape and labels.shape == self.labels.shape:
            return self._replay(images, labels)
        if self.graph is not None:
            return self._eager(images, labels)
        if not self.warmed_up:
            return self._warm_up(images, labels)
        return self._capture(images, labels)

    def _eager(self, images, labels):
        for parameter in self.parameters:
            parameter.grad = None
        loss, metrics = self.loss_fn(images, labels)
        self.backward(loss)
        return loss.detach(), metrics.detach()

    def _warm_up(self, images, labels):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self._eager(images, labels)
        torch.cuda.current_stream().wait_stream(side)
        self.warmed_up = True
        return outputs

    def _capture(self, images, labels):
        self.images, self.labels = images.clone(), labels.clone()
        for parameter in self.parameters:
            parameter.grad = None  # NOTE: so the captured backward allocates each .grad in the graph's memory
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            loss, metrics = self.loss_fn(self.images, self.labels)
            loss.backward()
        self.outputs, self.grads = (loss.detach(), metrics.detach()), [p.grad for p in self.parameters]
        return self._replay(images, labels)  # capturing ran nothing: this replay is the step on this batch

    def _replay(self, images, labels):
        self.images.copy_(images)
        self.labels.copy_(labels)
        self.graph.replay()
        for parameter, grad in zip(self.parameters, self.grads):
            parameter.grad = grad  # NOTE: an eager step in between may have replaced it; the graph writes here
        loss, metrics = self.outputs
        return loss.clone(), metrics.clone()  # NOTE: copies, so nothing that keeps them sees the next replay
