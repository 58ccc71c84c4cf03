"""manual_bp: the layers of a multilayer perceptron as torch.autograd.Functions with handwritten backward.

    import manual_bp.functional as MF   # mirrors torch.nn.functional
    import manual_bp.nn as mnn          # mirrors torch.nn
"""
from manual_bp import functional, nn
from manual_bp._checks import value_checks
from manual_bp.functions import DropoutFunction, LinearFunction, ReLUFunction, SigmoidFunction, TanhFunction
from manual_bp.losses import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    CrossEntropyLossFunction,
    CrossEntropyProbsLossFunction,
    MSELossFunction,
)

__version__ = "0.1.0"

__all__ = [
    "LinearFunction", "SigmoidFunction", "ReLUFunction", "TanhFunction", "DropoutFunction",
    "MSELossFunction", "BCELossFunction", "BCEWithLogitsLossFunction", "CrossEntropyLossFunction",
    "CrossEntropyProbsLossFunction",
    "functional", "nn", "value_checks",
]

# the next lecture's layers and loss
from manual_bp.functions import GELUFunction, LeakyReLUFunction, LogSoftmaxFunction, SoftmaxFunction  # noqa: E402
from manual_bp.losses import NLLLossFunction  # noqa: E402
from manual_bp.normalization import BatchNormEvalFunction, BatchNormFunction, LayerNormFunction  # noqa: E402

__all__ += [
    "BatchNormFunction", "BatchNormEvalFunction", "LayerNormFunction", "LeakyReLUFunction", "GELUFunction",
    "SoftmaxFunction", "LogSoftmaxFunction", "NLLLossFunction",
]
