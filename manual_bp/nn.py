"""nn.Module layers with the names and constructor arguments of torch.nn, built on manual_bp.functional."""
import torch

from manual_bp import _checks, functional as F

__all__ = [
    "Linear", "Sigmoid", "ReLU", "Tanh", "Dropout",
    "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
]


class Linear(torch.nn.Linear):
    """torch.nn.Linear with the handwritten backward: Z = X·Wᵀ + b.

    Subclassing keeps torch's parameters, weight layout (out_features, in_features), initialisation
    (Kaiming-uniform weight, uniform ±1/√in bias) and extra_repr, so a state_dict moves between the two classes
    in both directions and, for the same seed, both start from the same weights. Only forward is replaced.
    """

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)


class Sigmoid(torch.nn.Module):
    def forward(self, input):
        return F.sigmoid(input)


class Tanh(torch.nn.Module):
    def forward(self, input):
        return F.tanh(input)


class ReLU(torch.nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""  # as torch.nn.ReLU


class Dropout(torch.nn.Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")


class _ReductionRepr:
    """Shared by the losses below, which subclass torch's: the reduction checked at construction, and shown."""

    def _check_reduction(self):
        _checks.check_reduction(self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


# NOTE: each loss subclasses its torch.nn twin, as Linear does: the same constructor (size_average / reduce
# translated into `reduction` by torch, with its deprecation warning), `weight` / `pos_weight` registered as
# buffers by torch, so a state_dict moves both ways. Only forward is replaced.


class MSELoss(_ReductionRepr, torch.nn.MSELoss):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self._check_reduction()

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCELoss(_ReductionRepr, torch.nn.BCELoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self._check_reduction()

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_ReductionRepr, torch.nn.BCEWithLogitsLoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self._check_reduction()

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class CrossEntropyLoss(_ReductionRepr, torch.nn.CrossEntropyLoss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self._check_reduction()

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


# ------------------------------------------------------------------ the next lecture's layers and loss
# NOTE: each subclasses its torch.nn twin and replaces only forward: the constructor arguments, parameter and
# buffer names, initialisation, extra_repr and state_dict are torch's, so state dicts move both ways.

__all__ += ["BatchNorm1d", "LayerNorm", "LeakyReLU", "GELU", "Softmax", "LogSoftmax", "NLLLoss"]


class BatchNorm1d(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d with the handwritten backward: input (N, C) or (N, C, L).

    Training: normalise with the batch's μ and biased σ², and (track_running_stats) update running_mean and
    running_var (unbiased σ²) with momentum, or with the cumulative average 1/num_batches_tracked for momentum=None.
    Eval: normalise with the running statistics (or, without them, with the batch's, as torch).
    """

    def forward(self, input):
        _checks.check_tensor("input", input)
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")
        if input.shape[1] != self.num_features:
            raise ValueError(f"input must have num_features={self.num_features} channels in dim 1, "
                             f"got shape {tuple(input.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # NOTE: a 0-d tensor, not float(1 / n) as torch: no read of a tensor into Python, so
                # torch.compile(fullgraph=True) works with momentum=None (torch's own module breaks the graph here)
                momentum = 1.0 / self.num_batches_tracked
        use_batch_stats = self.training or self.running_mean is None
        update = not self.training or self.track_running_stats  # buffers passed only when used or updated
        return F.batch_norm(input, self.running_mean if update else None, self.running_var if update else None,
                            self.weight, self.bias, use_batch_stats, momentum, self.eps)


class LayerNorm(torch.nn.LayerNorm):
    """torch.nn.LayerNorm with the handwritten backward: normalise over the trailing dims normalized_shape."""

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class LeakyReLU(torch.nn.LeakyReLU):
    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class GELU(torch.nn.GELU):
    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)


class Softmax(torch.nn.Softmax):
    def forward(self, input):
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(torch.nn.LogSoftmax):
    def forward(self, input):
        return F.log_softmax(input, self.dim, _stacklevel=5)


class NLLLoss(torch.nn.NLLLoss):
    """torch.nn.NLLLoss (weight is a buffer, so it follows .to() and the state dict) with the handwritten backward."""

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)
