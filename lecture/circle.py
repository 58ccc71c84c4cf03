"""Learning a circular boundary: points labelled by whether they fall outside a circle of unknown centre and radius.

Model (sign convention used here): z = (x1 − w1)² + (x2 − w2)² − w0², ŷ = σ(z) = P(outside), so z > 0 outside.
Loss: binary cross-entropy; update: plain gradient descent on the whole data set, w ← w − α·∂E/∂w.

    python -m lecture.circle                       # the handwritten derivatives, checked
    python train.py --config configs/circle.yaml   # TensorBoard: circle/boundary
"""
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

import manual_bp.functional as MF
from lecture.common import BinaryClassifier, RepeatedBatch
from lecture.command_line import parser_for
from models.callbacks import tensorboard


class CircleFunction(torch.autograd.Function):
    """z = (x1 − w1)² + (x2 − w2)² − w0² for points x (N, 2) and w = (w0, w1, w2).

    ∂z/∂w0 = −2·w0,  ∂z/∂w1 = −2(x1 − w1),  ∂z/∂w2 = −2(x2 − w2);  ∂z/∂x = 2(x − (w1, w2)).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w):
        offset = x - w[1:]  # (N, 2) − (2,) -> (N, 2)
        return offset.square().sum(-1) - w[0].square()  # (N,)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_z):
        x, w = ctx.saved_tensors
        offset = x - w[1:]  # (N, 2)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = 2 * offset * grad_z[..., None]  # ∂z/∂x = 2(x − c): (N, 2)
        if ctx.needs_input_grad[1]:
            grad_w0 = (-2 * w[0] * grad_z).sum()[None]  # Σ_n ∂L/∂z_n · (−2 w0): (1,)
            grad_centre = (-2 * offset * grad_z[..., None]).sum(0)  # Σ_n ∂L/∂z_n · (−2(x_n − c)): (2,)
            grad_w = torch.cat([grad_w0, grad_centre])  # (3,)
        return grad_x, grad_w


def circle_data(count, centre, radius, half_width, seed):
    """Points uniform in [−half_width, half_width]², label 1 outside the circle, 0 inside."""
    generator = torch.Generator().manual_seed(seed)
    points = (torch.rand(count, 2, generator=generator) * 2 - 1) * half_width  # (N, 2)
    outside = ((points - torch.tensor(centre)).square().sum(-1) > radius**2).float()  # (N,)
    return points, outside


class CircleDataModule(pl.LightningDataModule):
    """Training and validation points around a hidden circle (full-batch: one batch is the whole set)."""

    def __init__(self, centre: tuple[float, float] = (1.0, -0.5), radius: float = 2.0, half_width: float = 4.0,
                 train_size: int = 2000, val_size: int = 1000, steps_per_epoch: int = 100, seed: int = 0):
        super().__init__()
        if radius <= 0 or half_width <= 0 or train_size < 1 or val_size < 1 or steps_per_epoch < 1:
            raise ValueError("radius and half_width must be > 0 and the sizes >= 1, got "
                             f"radius={radius}, half_width={half_width}, train_size={train_size}, "
                             f"val_size={val_size}, steps_per_epoch={steps_per_epoch}")
        self.save_hyperparameters()
        self.train = circle_data(train_size, centre, radius, half_width, seed)
        self.val = circle_data(val_size, centre, radius, half_width, seed + 1)

    def train_dataloader(self):
        return RepeatedBatch(self.train, self.hparams.steps_per_epoch)

    def val_dataloader(self):
        return RepeatedBatch(self.val)


class CircleModel(BinaryClassifier):
    """w = (w0, w1, w2): radius and centre of the learned circle, fitted by plain gradient descent."""

    def __init__(self, initial_w: tuple[float, float, float] = (1.0, 0.0, 0.0), lr: float = 0.1):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters()
        self.w = torch.nn.Parameter(torch.tensor(initial_w))

    def forward(self, points):
        return CircleFunction.apply(points, self.w)  # z: (N,)

    def probability(self, points):
        return MF.sigmoid(self(points))  # ŷ = σ(z) = P(outside)

    def on_validation_epoch_end(self):
        self.log_dict({"circle/radius": self.w[0].abs(), "circle/centre_x1": self.w[1], "circle/centre_x2": self.w[2]})
        writer = tensorboard(self.trainer)
        data = self.trainer.datamodule
        if writer is not None and data is not None and not self.trainer.sanity_checking:
            writer.add_figure("circle/boundary", boundary_figure(self.w.detach().cpu(), data), self.current_epoch)

    def on_fit_end(self):
        """What gradient descent found, beside the circle the data were drawn from."""
        data = self.trainer.datamodule
        if self.trainer.is_global_zero and data is not None:
            (c1, c2), radius = data.hparams.centre, data.hparams.radius
            print(f"circle learned: centre ({self.w[1]:.3f}, {self.w[2]:.3f}), radius {self.w[0].abs():.3f}; "
                  f"the data's circle: centre ({c1:.3f}, {c2:.3f}), radius {radius:.3f}")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)  # w <- w - lr * dE/dw, nothing more


def boundary_figure(w, data):
    points, outside = data.train
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    axes.scatter(points[:, 0], points[:, 1], s=3, c=outside, cmap="coolwarm")
    angle = torch.linspace(0, 2 * torch.pi, 200)
    for (c1, c2), r, style, label in (
        (data.hparams.centre, data.hparams.radius, "k--", "true circle"),
        ((w[1].item(), w[2].item()), w[0].abs().item(), "k-", "learned circle"),
    ):
        axes.plot(c1 + r * torch.cos(angle), c2 + r * torch.sin(angle), style, label=label)
    axes.set(aspect="equal", title="circle: data (red outside) and boundaries")
    axes.legend(loc="upper right", fontsize=7)
    return figure


def main(argv=None):
    """The handwritten ∂z/∂w and ∂z/∂x against autograd's numerical check; the fit itself is a training run."""
    parser_for(__doc__).parse_args(argv)  # no options: --help, and any argument refused
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([2.0, 1.0, -0.5], dtype=torch.float64, requires_grad=True)
    passed = torch.autograd.gradcheck(CircleFunction.apply, (x, w)) and torch.autograd.gradgradcheck(
        CircleFunction.apply, (x, w))
    print(f"CircleFunction: gradcheck and gradgradcheck {'pass' if passed else 'FAIL'} "
          "(∂z/∂w0 = −2·w0, ∂z/∂w1 = −2(x1 − w1), ∂z/∂w2 = −2(x2 − w2))")
    print("centre and radius learned by gradient descent: python train.py --config configs/circle.yaml "
          "(TensorBoard: circle/boundary)")


if __name__ == "__main__":
    main()
