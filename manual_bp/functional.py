"""Functional API with the names, arguments and defaults of torch.nn.functional: `import manual_bp.functional as MF`.

Each function checks its arguments (clear errors naming the argument), then calls its autograd Function. Every
argument sits in torch's position with torch's default; the deprecated `size_average` and `reduce` are accepted there
only to refuse anything but None with a message naming `reduction`. Each lives with its Function and Module in
manual_bp/ops/<family>.py; this module gathers them.
"""
from manual_bp.ops.activations import gelu, leaky_relu, relu, sigmoid, tanh
from manual_bp.ops.batch_norm import batch_norm
from manual_bp.ops.binary_cross_entropy import binary_cross_entropy, binary_cross_entropy_with_logits
from manual_bp.ops.cross_entropy import cross_entropy
from manual_bp.ops.dropout import dropout
from manual_bp.ops.layer_norm import layer_norm
from manual_bp.ops.linear import linear
from manual_bp.ops.mse_loss import mse_loss
from manual_bp.ops.nll_loss import nll_loss
from manual_bp.ops.softmax import log_softmax, softmax

__all__ = [
    "linear", "sigmoid", "relu", "tanh", "dropout",
    "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
    "batch_norm", "layer_norm", "leaky_relu", "gelu", "softmax", "log_softmax", "nll_loss",
]
