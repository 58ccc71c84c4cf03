"""Per-layer statistics of a network's forward and backward signals: what a bad initialisation does to them.

For each activation layer l: the mean and standard deviation of its output A_l and the fraction of it that is
saturated (tanh |A| > 0.99, sigmoid A < 0.01 or A > 0.99, ReLU: dead units, 0 for every sample of the batch); for each
Linear layer: the standard deviation of ∂L/∂W_l, what the update is made of.
"""
import torch

from models.mlp import ACTIVATIONS, BACKENDS

ACTIVATION_TYPES = tuple(getattr(nn, name) for nn in BACKENDS.values() for name in ACTIVATIONS.values())


def saturated_fraction(activation_name, output):
    """The fraction of `output` (B, H) where the activation passes (almost) no gradient back."""
    # NOTE: 0.99: tanh′ = 1 − A² < 0.02 and σ′ = A(1 − A) < 0.01 there, the gradient through the unit all but gone
    if activation_name == "Tanh":
        return (output.abs() > 0.99).float().mean()
    if activation_name == "Sigmoid":
        return ((output < 0.01) | (output > 0.99)).float().mean()
    # NOTE: ReLU: a unit with A = 0 for every sample is dead for this batch (ReLU′ = 0 everywhere); a single zero
    # is no sign of trouble, half of a healthy ReLU layer's outputs are 0
    return (output.reshape(-1, output.shape[-1]) == 0).all(0).float().mean()  # (B, H) -> (H,) -> ()


class ActivationRecorder:
    """Forward hooks on every activation module of `module` (manual_bp's and torch.nn's) keeping each forward's
    output by module name, until `remove()`. The hooks only keep a reference (no copy, no synchronisation)."""

    def __init__(self, module):
        self.outputs = {}
        self.kinds = {}
        self.handles = []
        for name, layer in module.named_modules():
            if isinstance(layer, ACTIVATION_TYPES):
                self.kinds[name] = type(layer).__name__
                self.handles.append(layer.register_forward_hook(self._keep(name)))

    def _keep(self, name):
        def hook(layer, inputs, output):
            self.outputs[name] = output.detach()
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def statistics(self):
        """{name: (mean, std, saturated fraction)} of the recorded outputs, as 0-d tensors."""
        return {name: (output.float().mean(), output.float().std(), saturated_fraction(self.kinds[name], output))
                for name, output in self.outputs.items()}


def weight_gradient_stds(module):
    """{name: std of ∂L/∂W} of every Linear weight of `module` that has a gradient."""
    return {f"{name}.weight": layer.weight.grad.float().std() for name, layer in module.named_modules()
            if isinstance(layer, torch.nn.Linear) and layer.weight.grad is not None}
