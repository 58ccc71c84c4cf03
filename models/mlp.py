"""The MLP and its loss, from manual_bp layers or, as a twin for comparison, from torch.nn.

For the same seed both backends build the same architecture with the same initial weights
(manual_bp.nn.Linear initialises exactly as torch.nn.Linear, manual_bp.init draws exactly as torch.nn.init).
"""
import torch
import torch.nn.functional as F

import manual_bp.functional as MF
import manual_bp.init as minit
import manual_bp.nn as mnn

BACKENDS = {"manual": mnn, "native": torch.nn}
FUNCTIONALS = {"manual": MF, "native": F}
INITS = {"manual": minit, "native": torch.nn.init}
INITIALISATIONS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")
ACTIVATIONS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
NORMS = {"batch": "BatchNorm1d", "layer": "LayerNorm"}


def build_mlp(input_size, hidden_sizes, num_classes, activation="relu", backend="manual", dropout=0.0, norm="none",
              init="default"):
    """Linear (-> batch / layer norm) -> activation (-> dropout) for each hidden size, then a Linear to one score
    per class; its Linear layers initialised by `init` (see `initialise`)."""
    for name, value, choices in (("activation", activation, ACTIVATIONS), ("backend", backend, BACKENDS),
                                 ("norm", norm, ("none", *NORMS))):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
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
    net = torch.nn.Sequential(*layers)
    initialise(net, init, activation, backend)
    return net


def initialise(net, init, activation, backend="manual"):
    """Re-draw the weights of every Linear in `net` (in order) by `init`, through manual_bp.init (backend manual) or
    torch.nn.init (native), and set the biases to 0; "default" keeps torch.nn.Linear's own initialisation.

    The gain is the hidden activation's (calculate_gain: relu √2, tanh 5/3, sigmoid 1) for the hidden layers, and
    1 ("linear") for the last layer, whose scores go straight into the loss. xavier_*: Var(W) = g²·2/(fan_in +
    fan_out); kaiming_*: Var(W) = g²/fan_in; orthogonal: W = g·Q.
    """
    if init not in INITIALISATIONS:
        raise ValueError(f"init must be one of {', '.join(INITIALISATIONS)}; got {init!r}")
    if init == "default":
        return
    functions = INITS[backend]
    linears = [module for module in net if isinstance(module, torch.nn.Linear)]
    for index, layer in enumerate(linears):
        nonlinearity = activation if index < len(linears) - 1 else "linear"
        if init.startswith("kaiming"):
            getattr(functions, f"{init}_")(layer.weight, nonlinearity=nonlinearity)
        else:
            getattr(functions, f"{init}_")(layer.weight, gain=functions.calculate_gain(nonlinearity))
        # NOTE: zero biases: with Var(W) chosen for the signal, a random bias would only add variance
        functions.zeros_(layer.bias)


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
