"""The MLP and its loss, from manual_bp layers or, as a twin for comparison, from torch.nn.

For the same seed both backends build the same architecture with the same initial weights
(manual_bp.nn.Linear initialises exactly as torch.nn.Linear).
"""
import torch
import torch.nn.functional as F

import manual_bp.functional as MF
import manual_bp.nn as mnn

BACKENDS = {"manual": mnn, "native": torch.nn}
FUNCTIONALS = {"manual": MF, "native": F}
ACTIVATIONS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
NORMS = {"batch": "BatchNorm1d", "layer": "LayerNorm"}


def build_mlp(input_size, hidden_sizes, num_classes, activation="relu", backend="manual", dropout=0.0, norm="none"):
    """Linear (-> batch / layer norm) -> activation (-> dropout) for each hidden size, then a Linear to one score
    per class."""
    nn = BACKENDS[backend]
    layers, fan_in = [], input_size
    for width in hidden_sizes:
        layers.append(nn.Linear(fan_in, width))
        if norm != "none":
            layers.append(getattr(nn, NORMS[norm])(width))
        layers.append(getattr(nn, ACTIVATIONS[activation])())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return torch.nn.Sequential(*layers)


def classification_loss(logits, labels, loss, backend="manual"):
    """The training objective on class scores (B, C) and labels (B,).

    cross_entropy: softmax cross-entropy on the scores. mse: the lecture's sigmoid outputs against one-hot targets,
    mean over the B x C entries. bce: binary cross-entropy of the sigmoid outputs against one-hot targets, in its
    fused stable form (with logits).
    """
    functional = FUNCTIONALS[backend]
    if loss == "cross_entropy":
        return functional.cross_entropy(logits, labels)
    onehot = one_hot(labels, logits.shape[-1], logits.dtype)  # (B,) -> (B, C)
    if loss == "mse":
        return functional.mse_loss(functional.sigmoid(logits), onehot)
    return functional.binary_cross_entropy_with_logits(logits, onehot)


def one_hot(labels, num_classes, dtype):
    """(B,) class indices -> (B, C) one-hot rows of `dtype`.

    NOTE: a comparison with 0..C-1 rather than F.one_hot, which reads the labels on the host to check their range
    (a synchronisation per step on CUDA, impossible inside a CUDA graph); the labels are checked once, when loaded.
    """
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(dtype)  # (B, 1) == (C,) -> (B, C)
