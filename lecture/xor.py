"""XOR, the lecture's example of a function one neuron cannot compute and two layers can.

By hand: OR = σ(20·x1 + 20·x2 − 10), NAND = σ(−20·x1 − 20·x2 + 30), XOR = AND(OR, NAND) = σ(20·a + 20·b − 30).
Learned: a 2-H-1 sigmoid MLP from random weights, trained with binary cross-entropy:

    python -m lecture.xor                          # the hand-set network's truth table
    python train.py --config configs/xor.yaml      # TensorBoard: xor/decision_regions
"""
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

import manual_bp.nn as mnn
from lecture.common import BinaryClassifier, RepeatedBatch
from lecture.command_line import parser_for
from models.callbacks import tensorboard

INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # (4, 2): the truth table's rows
TARGETS = torch.tensor([[0.0], [1.0], [1.0], [0.0]])  # (4, 1): x1 XOR x2


def sigmoid_mlp(hidden_size):
    return torch.nn.Sequential(mnn.Linear(2, hidden_size), mnn.Sigmoid(), mnn.Linear(hidden_size, 1), mnn.Sigmoid())


def hand_set_xor():
    """The lecture's weights: hidden unit 0 is OR, hidden unit 1 is NAND, the output is AND of the two."""
    net = sigmoid_mlp(2)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[20.0, 20.0], [-20.0, -20.0]]))  # rows: OR, NAND
        net[0].bias.copy_(torch.tensor([-10.0, 30.0]))
        net[2].weight.copy_(torch.tensor([[20.0, 20.0]]))  # AND(a, b)
        net[2].bias.copy_(torch.tensor([-30.0]))
    return net


class XORDataModule(pl.LightningDataModule):
    """The four rows of the truth table as one batch, `steps_per_epoch` times per epoch."""

    def __init__(self, steps_per_epoch: int = 100):
        super().__init__()
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch

    def train_dataloader(self):
        return RepeatedBatch((INPUTS, TARGETS), self.steps_per_epoch)

    def val_dataloader(self):
        return RepeatedBatch((INPUTS, TARGETS))


class XORModel(BinaryClassifier):
    """A 2-H-1 sigmoid MLP of manual_bp layers, binary cross-entropy, SGD with momentum."""

    def __init__(self, hidden_size: int = 3, lr: float = 1.0, momentum: float = 0.9):
        super().__init__()
        if hidden_size < 1 or lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need hidden_size >= 1, lr > 0, momentum in [0, 1); got {hidden_size}, {lr}, {momentum}")
        self.save_hyperparameters()
        self.net = sigmoid_mlp(hidden_size)

    def forward(self, x):
        return self.net(x)

    def probability(self, x):
        return self(x)  # the output unit is already a sigmoid

    def on_validation_epoch_end(self):
        writer = tensorboard(self.trainer)
        if writer is not None and not self.trainer.sanity_checking:
            writer.add_figure("xor/decision_regions", decision_regions(self.net), self.current_epoch)

    @torch.no_grad()
    def on_fit_end(self):
        """The learned network's truth table against XOR's."""
        if not self.trainer.is_global_zero:
            return
        outputs = self(INPUTS.to(self.device)).cpu().flatten().tolist()
        print("XOR learned: x1 x2 -> output (XOR)")
        for (x1, x2), output, target in zip(INPUTS.int().tolist(), outputs, TARGETS.int().flatten().tolist()):
            print(f"  {x1}  {x2} -> {output:.3f} ({target})")
        right = sum((output > 0.5) == bool(target) for output, target in zip(outputs, TARGETS.flatten().tolist()))
        print(f"{right} of 4 rows right (output > 0.5 exactly where XOR is 1)")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)


@torch.no_grad()
def decision_regions(net, resolution=101):
    """The network's output over [0, 1]², with the four XOR points (filled: 1, open: 0)."""
    axis = torch.linspace(0, 1, resolution)
    grid = torch.cartesian_prod(axis, axis)  # (R², 2): (x1, x2) pairs
    device = next(net.parameters()).device
    output = net(grid.to(device)).cpu().reshape(resolution, resolution)  # [i, j] = net(axis[i], axis[j])
    figure = Figure(figsize=(4.5, 4))
    axes = figure.add_subplot()
    image = axes.imshow(output.T.numpy(), origin="lower", extent=(0, 1, 0, 1), vmin=0, vmax=1, cmap="coolwarm")
    axes.contour(axis.numpy(), axis.numpy(), output.T.numpy(), levels=[0.5], colors="black")
    for (x1, x2), target in zip(INPUTS.tolist(), TARGETS.flatten().tolist()):
        axes.scatter([x1], [x2], s=120, c="black" if target else "white", edgecolors="black", clip_on=False, zorder=3)
    figure.colorbar(image, ax=axes, label="network output")
    axes.set(xlabel="x1", ylabel="x2", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="XOR decision regions")
    return figure


def main(argv=None):
    """The hand-set network's truth table; the learned one is a training run (see the module docstring)."""
    parser_for(__doc__).parse_args(argv)  # no options: --help, and any argument refused
    with torch.no_grad():
        outputs = hand_set_xor()(INPUTS)
    for (x1, x2), y, target in zip(INPUTS.tolist(), outputs.flatten().tolist(), TARGETS.flatten().tolist()):
        print(f"x1 = {x1:.0f}, x2 = {x2:.0f}: OR/NAND/AND network gives {y:.5f}, XOR is {target:.0f}")
    print("learned from random weights: python train.py --config configs/xor.yaml (TensorBoard: xor/decision_regions)")


if __name__ == "__main__":
    main()
