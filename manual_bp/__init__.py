"""manual_bp: the layers of a multilayer perceptron as torch.autograd.Functions with handwritten backward.

    import manual_bp.functional as MF   # mirrors torch.nn.functional
    import manual_bp.nn as mnn          # mirrors torch.nn
    import manual_bp.init as minit      # mirrors torch.nn.init

Each op family is one file of manual_bp/ops/: its Function(s), functional wrapper(s) and Module(s) together.
"""
from manual_bp import functional, init, nn
from manual_bp.ops.activations import GELUFunction, LeakyReLUFunction, ReLUFunction, SigmoidFunction, TanhFunction
from manual_bp.ops.batch_norm import BatchNormEvalFunction, BatchNormFunction
from manual_bp.ops.binary_cross_entropy import BCELossFunction, BCEWithLogitsLossFunction
from manual_bp.ops.cross_entropy import CrossEntropyLossFunction, CrossEntropyProbsLossFunction
from manual_bp.ops.dropout import DropoutFunction
from manual_bp.ops.layer_norm import LayerNormFunction
from manual_bp.ops.linear import LinearFunction
from manual_bp.ops.mse_loss import MSELossFunction
from manual_bp.ops.nll_loss import NLLLossFunction
from manual_bp.ops.softmax import LogSoftmaxFunction, SoftmaxFunction

__version__ = "0.1.0"

__all__ = [
    "LinearFunction", "SigmoidFunction", "ReLUFunction", "TanhFunction", "DropoutFunction",
    "MSELossFunction", "BCELossFunction", "BCEWithLogitsLossFunction", "CrossEntropyLossFunction",
    "CrossEntropyProbsLossFunction",
    "BatchNormFunction", "BatchNormEvalFunction", "LayerNormFunction", "LeakyReLUFunction", "GELUFunction",
    "SoftmaxFunction", "LogSoftmaxFunction", "NLLLossFunction",
    "functional", "init", "nn",
]
