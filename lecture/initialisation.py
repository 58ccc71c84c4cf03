"""Where do we start our search? A deep MLP from four starting points, with tanh and with ReLU.

    python -m lecture.initialisation          # a few seconds on 2 CPU cores; --help for the options
    python -m lecture.initialisation --out docs/figures/initialisation.png   # the docs' figure

A 784-(128 × 9)-10 MLP of manual_bp layers is started from W ~ N(0, 0.01²) (too small), W ~ N(0, 1) (too large),
Xavier (Var(W) = 2/(fan_in + fan_out)) and He (Var(W) = 2/fan_in), biases 0. For each start: per hidden layer the
activations' mean, std and saturated fraction (tanh |A| > 0.99; ReLU units 0 on the whole batch) and the std of
∂L/∂W, on one batch of the shipped MNIST slice; then a few epochs of plain SGD on the slice. One figure (a column
per start) goes to TensorBoard and to a PNG, both in a new folder runs/initialisation/version_<n>; the run ends
with verdict lines computed from these numbers.
"""
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

import manual_bp.functional as MF
import manual_bp.init as minit
from lecture.common import DATA_ERRORS, data_error_line
from lecture.command_line import new_run_folder, parser_for, positive_int, report
from models.data import MNISTDataModule
from models.layer_stats import ActivationRecorder, weight_gradient_stds
from models.mlp import build_mlp

ROOT = Path(__file__).resolve().parents[1]
STARTS = {  # name: how each Linear weight is drawn (its activation's name given)
    "too small": lambda weight, activation: minit.normal_(weight, 0.0, 0.01),
    "too large": lambda weight, activation: minit.normal_(weight, 0.0, 1.0),
    "Xavier": lambda weight, activation: minit.xavier_normal_(weight),
    "He": lambda weight, activation: minit.kaiming_normal_(weight, nonlinearity="relu"),
}
FORMULAS = {"too small": "W ~ N(0, 0.01²)", "too large": "W ~ N(0, 1)", "Xavier": "Var W = 2/(fan_in + fan_out)",
            "He": "Var W = 2/fan_in"}
ACTIVATIONS = ("tanh", "relu")
# NOTE: the verdicts' thresholds. A factor of 10 from the first hidden layer to the last is a clear trend (the good
# starts stay within about 3); "saturates": more than half of a layer's units pass almost no gradient; "trains": the
# last epoch's mean loss under 1.0, "trains slowly": under 2.0, both well below chance (ln 10 = 2.30)
FACTOR, SATURATED, TRAINED, LEARNING = 10.0, 0.5, 1.0, 2.0


def deep_mlp(activation, start, depth, width, seed):
    """build_mlp's network with every Linear weight drawn by STARTS[start] and zero biases."""
    torch.manual_seed(seed)
    net = build_mlp(784, [width] * depth, 10, activation)
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            STARTS[start](layer.weight, activation)
            minit.zeros_(layer.bias)
    return net


def measure(net, images, labels):
    """One forward and backward on a batch: per hidden layer (mean, std, saturated) of its activations, and the
    std of ∂L/∂W of each Linear, as float lists (first layer first)."""
    recorder = ActivationRecorder(net)
    net.zero_grad()
    MF.cross_entropy(net(images), labels).backward()
    recorder.remove()
    activations = [[value.item() for value in stats] for stats in recorder.statistics().values()]
    gradients = [value.item() for value in weight_gradient_stds(net).values()]
    net.zero_grad()
    return {"mean": [a[0] for a in activations], "std": [a[1] for a in activations],
            "saturated": [a[2] for a in activations], "grad_std": gradients, "outputs": recorder.outputs}


def train(net, images, labels, epochs, batch_size, lr, seed):
    """Plain SGD on (images, labels) for `epochs`: each epoch's mean loss (inf once a loss is not finite)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        total = 0.0
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(batch_size):
            loss = MF.cross_entropy(net(images[batch]), labels[batch])
            if not torch.isfinite(loss):
                return losses + [math.inf] * (epochs - len(losses))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(labels))
    return losses


def verdict(stats, losses):
    """What a start does, from its numbers: vanishes / explodes (forward, backward), saturates, trains or not."""
    depth = len(stats["std"])
    words = []
    forward = stats["std"][-1] / max(stats["std"][0], 1e-30)  # activations: last hidden layer's std over the first's
    backward = stats["grad_std"][0] / max(stats["grad_std"][depth - 1], 1e-30)  # ∂L/∂W: first layer's over last hidden's
    if forward < 1 / FACTOR:
        words.append(f"vanishes (activation std ×{forward:.0e} from layer 1 to {depth})")
    if forward > FACTOR:
        words.append(f"explodes (activation std ×{forward:.0e} from layer 1 to {depth})")
    if backward > FACTOR:
        words.append(f"gradients explode towards the input (∂L/∂W std ×{backward:.0e} from layer {depth} to 1)")
    if backward < 1 / FACTOR:
        words.append(f"gradients vanish towards the input (∂L/∂W std ×{backward:.0e} from layer {depth} to 1)")
    saturated = max(stats["saturated"])
    if saturated > SATURATED:
        words.append(f"saturates ({saturated:.0%} of a layer's units)")
    first, last = losses[0], losses[-1]
    progress = f"loss {first:.2f} -> {last:.2f} in {len(losses)} epochs"
    words.append(f"trains ({progress})" if last < TRAINED else f"trains slowly ({progress})" if last < LEARNING
                 else f"does not train ({progress})")
    return words


def run(data_dir, epochs=3, depth=9, width=128, lr=0.05, batch_size=100, seed=0):
    """{(activation, start): (statistics, losses, verdict words)} on the MNIST slice in data_dir."""
    data = MNISTDataModule(str(data_dir), download=False, val_size=500).load()
    images, labels = data["train"]
    images = images.flatten(1)  # (N, 28, 28) -> (N, 784)
    probe = images[:500], labels[:500]
    results = {}
    for activation in ACTIVATIONS:
        for start in STARTS:
            net = deep_mlp(activation, start, depth, width, seed)
            stats = measure(net, *probe)
            losses = train(net, images, labels, epochs, batch_size, lr, seed)
            results[activation, start] = stats, losses, verdict(stats, losses)
    return results


def statistics_figure(results):
    """One column per start: tanh and ReLU activations per layer (histograms, dark to light with depth), their std
    and the std of ∂L/∂W per layer, and the loss per epoch."""
    starts = list(STARTS)
    figure = Figure(figsize=(11, 8.6), dpi=72, layout="constrained")
    axes = figure.subplots(4, len(starts), sharey="row")
    for column, start in enumerate(starts):
        for row, activation in enumerate(ACTIVATIONS):
            panel = axes[row, column]
            outputs = list(results[activation, start][0]["outputs"].values())
            colours = [(0.1 + 0.8 * index / len(outputs),) * 3 for index in range(len(outputs))]
            for output, colour in zip(outputs, colours):
                if activation == "tanh":
                    counts, edges = torch.histogram(output.flatten(), bins=40, range=(-1.0, 1.0))
                else:  # NOTE: ReLU outputs span 20 orders of magnitude across the starts: log10 of the positive ones
                    counts, edges = torch.histogram(output[output > 0].log10(), bins=40, range=(-12.0, 10.0))
                panel.plot((edges[1:] + edges[:-1]) / 2, counts / max(counts.sum(), 1), color=colour, lw=1)
            panel.set_xlabel("tanh output A" if activation == "tanh" else "ReLU output, log10 A (A > 0)", fontsize=8)
        axes[0, column].set_title(f"{start}: {FORMULAS[start]}", fontsize=10)
        stats_panel, loss_panel = axes[2, column], axes[3, column]
        for activation, colour in zip(ACTIVATIONS, ("tab:blue", "tab:orange")):
            stats, losses, _ = results[activation, start]
            stats_panel.semilogy(range(1, len(stats["std"]) + 1), stats["std"], "-o", ms=3, color=colour,
                                 label=f"{activation} A std")
            stats_panel.semilogy(range(1, len(stats["grad_std"]) + 1), stats["grad_std"], "--", color=colour,
                                 label=f"{activation} ∂L/∂W std")
            loss_panel.plot(range(1, len(losses) + 1), [min(loss, 10.0) for loss in losses], "-o", ms=3,
                            color=colour, label=activation)  # NOTE: a diverged (inf) loss is drawn at 10
            if not math.isfinite(losses[-1]):
                loss_panel.text(1, 9.3, f"{activation}: diverged (loss inf)", fontsize=8, color=colour, va="top")
        stats_panel.set_xlabel("layer", fontsize=8)
        loss_panel.set_xlabel("epoch", fontsize=8)
        loss_panel.axhline(math.log(10), color="gray", lw=0.8, ls=":")
    axes[0, 0].set_ylabel("tanh: share per bin\n(layer 1 dark, 9 light)", fontsize=8)
    axes[1, 0].set_ylabel("ReLU: share per bin\n(layer 1 dark, 9 light)", fontsize=8)
    axes[2, 0].set_ylabel("std per layer", fontsize=8)
    axes[3, 0].set_ylabel("training loss (chance dotted)", fontsize=8)
    axes[2, -1].legend(fontsize=7, loc="lower center", ncol=2)  # NOTE: in the last column, where the lines stay near 1
    axes[3, -1].legend(fontsize=7, loc="upper right")
    for panel in axes.flat:
        panel.tick_params(labelsize=7)
    figure.suptitle("Where do we start our search? A 9-hidden-layer MLP from four starts", fontsize=12)
    return figure


def main(argv=None):
    parser = parser_for(__doc__)
    parser.add_argument("--data_dir", default=str(ROOT / "tests" / "data" / "mnist_slice"),
                        help="four MNIST IDX files (default: the 3,000-digit slice shipped with the tests)")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--logdir", default="runs/initialisation",
                        help="TensorBoard folder: each run writes a new version_<n> in it ('' for none)")
    parser.add_argument("--out", help="PNG path of the figure (default: initialisation.png in the run's folder, "
                                      "or in the current folder with --logdir '')")
    args = parser.parse_args(argv)
    try:
        results = run(args.data_dir, args.epochs)
    except DATA_ERRORS as error:
        parser.error(data_error_line(error))
    folder = new_run_folder(parser, args.logdir) if args.logdir else None
    figure = statistics_figure(results)
    if folder:
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(str(folder)) as writer:
            writer.add_figure("initialisation/statistics", figure)
            for (activation, start), (_, losses, _) in results.items():
                for epoch, loss in enumerate(losses):
                    writer.add_scalar(f"initialisation/loss/{activation}, {start}", loss, epoch)
    verdicts = [f"{activation}, {start}: {'; '.join(words)}" for (activation, start), (_, _, words) in results.items()]
    report(figure, args.out or (folder or Path()) / "initialisation.png", verdicts,
           f"; TensorBoard: tensorboard --logdir {args.logdir}" if folder else "")
    return results


if __name__ == "__main__":
    main()
