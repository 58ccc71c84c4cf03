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
    def forward(self, input):
        return F.relu(input)


class Dropout(torch.nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be a probability in [0, 1), got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class _Loss(torch.nn.Module):
    loss_fn = None

    def __init__(self, reduction="mean"):
        super().__init__()
        _checks.check_reduction(reduction)
        self.reduction = reduction

    def forward(self, input, target):
        return type(self).loss_fn(input, target, reduction=self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    loss_fn = staticmethod(F.mse_loss)


class BCELoss(_Loss):
    loss_fn = staticmethod(F.binary_cross_entropy)


class BCEWithLogitsLoss(_Loss):
    loss_fn = staticmethod(F.binary_cross_entropy_with_logits)


class CrossEntropyLoss(_Loss):
    loss_fn = staticmethod(F.cross_entropy)
