"""nn.Module layers with the names and constructor arguments of torch.nn: `import manual_bp.nn as mnn`.

Those with parameters, buffers or constructor arguments subclass their torch.nn twin and replace only forward, so
constructor arguments, parameter and buffer names, initialisation, extra_repr and state_dict are torch's and state
dicts move both ways; Sigmoid, Tanh, ReLU and Dropout are small nn.Modules of their own with torch's arguments. Each lives
with its Function and functional wrapper in manual_bp/ops/<family>.py; this module gathers them.
"""
from manual_bp.ops.activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from manual_bp.ops.batch_norm import BatchNorm1d
from manual_bp.ops.binary_cross_entropy import BCELoss, BCEWithLogitsLoss
from manual_bp.ops.cross_entropy import CrossEntropyLoss
from manual_bp.ops.dropout import Dropout
from manual_bp.ops.layer_norm import LayerNorm
from manual_bp.ops.linear import Linear
from manual_bp.ops.mse_loss import MSELoss
from manual_bp.ops.nll_loss import NLLLoss
from manual_bp.ops.softmax import LogSoftmax, Softmax

__all__ = [
    "Linear", "Sigmoid", "ReLU", "Tanh", "Dropout",
    "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "BatchNorm1d", "LayerNorm", "LeakyReLU", "GELU", "Softmax", "LogSoftmax", "NLLLoss",
]
