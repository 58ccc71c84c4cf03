"""Is batch gradient descent the best way? Five update rules train the same MNIST MLP for the same number of epochs.

    python -m lecture.optimisers_mnist --data_dir data/mnist           # 784-800-10 ReLU MLP, 5 epochs per rule
    python -m lecture.optimisers_mnist --data_dir tests/data/mnist_slice --val_size 500 --epochs 3   # seconds
    tensorboard --logdir runs/optimisers                                # one run per rule, the same tags
    python -m lecture.optimisers_mnist --data_dir data/mnist --out docs/figures/optimisers_mnist.png  # docs' figure

Full-batch gradient descent (one update per epoch, from the gradient of every training digit), mini-batch SGD,
SGD with momentum, RMSprop and Adam, all from manual_bp.optim and all starting from the same weights (seed 0),
with manual_bp layers. Each run writes a new folder runs/optimisers/version_<n>: each rule's curves for TensorBoard
(`<rule>/`: loss/train, acc/val per epoch) and one PNG of them all; it ends with a table and verdict lines: loss and
accuracy reached, updates made, time.
"""
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

import manual_bp.functional as MF
from lecture.common import DATA_ERRORS, data_error_line
from lecture.command_line import new_run_folder, parser_for, positive_int, report
from manual_bp import optim
from models.data import MNISTDataModule
from models.mlp import build_mlp

ROOT = Path(__file__).resolve().parents[1]
# rule: (class, keyword arguments, batch size; None = the whole training set, one update per epoch)
# NOTE: the usual rate for each mini-batch rule (Adam's and RMSprop's 1e-3, SGD's 0.1, 0.01 with momentum 0.9);
# full-batch descent gets the largest of 0.05, 0.1, 0.2, 0.3 at which its loss on the full MNIST still falls every
# epoch (at 0.3 it rises again from the third), since its gradient is exact and it makes so few steps
RULES = {
    "full-batch gradient descent": (optim.SGD, {"lr": 0.2}, None),
    "mini-batch SGD": (optim.SGD, {"lr": 0.1}, 128),
    "SGD with momentum": (optim.SGD, {"lr": 0.01, "momentum": 0.9}, 128),
    "RMSprop": (optim.RMSprop, {"lr": 1e-3}, 128),
    "Adam": (optim.Adam, {"lr": 1e-3}, 128),
}


def train(rule, data, epochs, writer=None, seed=0):
    """{"loss": per-epoch mean training loss, "acc": per-epoch validation accuracy, "updates", "seconds"}."""
    optimizer_class, kwargs, batch_size = RULES[rule]
    (images, labels), (val_images, val_labels) = data["train"], data["val"]
    torch.manual_seed(seed)  # NOTE: the same initial weights and the same batch order for every rule
    net = build_mlp(784, (800,), 10, "relu", "manual")
    optimizer = optimizer_class(net.parameters(), **kwargs)
    batch_size = batch_size or len(labels)
    history, updates, start = {"loss": [], "acc": []}, 0, time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + epoch))
        total = 0.0
        for begin in range(0, len(labels), batch_size):
            index = order[begin: begin + batch_size]
            loss = MF.cross_entropy(net(images[index].flatten(1)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, updates = total + loss.item() * len(index), updates + 1
        with torch.no_grad():
            accuracy = (net(val_images.flatten(1)).argmax(1) == val_labels).float().mean().item()
        # NOTE: the mean of the batches' losses, each taken before its update: for full-batch descent the loss of the
        # epoch's one batch before its one update, for the others a running mean over the epoch
        history["loss"].append(total / len(labels))
        history["acc"].append(accuracy)
        if writer is not None:
            writer.add_scalar("loss/train", history["loss"][-1], epoch + 1)
            writer.add_scalar("acc/val", accuracy, epoch + 1)
    return {**history, "updates": updates, "seconds": time.perf_counter() - start}


def figure(results):
    """Training loss (log scale) and validation accuracy per epoch, one line per rule."""
    fig = Figure(figsize=(10, 4), dpi=80)
    loss_axes, acc_axes = fig.subplots(1, 2)
    for rule, result in results.items():
        epochs = range(1, len(result["loss"]) + 1)
        loss_axes.plot(epochs, result["loss"], marker="o", markersize=3, label=rule)
        acc_axes.plot(epochs, [100 * a for a in result["acc"]], marker="o", markersize=3, label=rule)
    loss_axes.set(yscale="log", xlabel="epoch", ylabel="mean training loss", title="loss/train")
    acc_axes.set(xlabel="epoch", ylabel="validation accuracy (%)", title="acc/val")
    for axes in (loss_axes, acc_axes):
        axes.xaxis.get_major_locator().set_params(integer=True)
    acc_axes.legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts(results):
    """The table, then which rule reached the lowest loss and the best accuracy, and what full-batch descent did."""
    lines = [f"{'rule':<28} {'train loss':>10} {'val acc':>8} {'updates':>8} {'seconds':>8}"]
    lines += [f"{rule:<28} {r['loss'][-1]:>10.4f} {100 * r['acc'][-1]:>7.2f}% {r['updates']:>8} {r['seconds']:>8.1f}"
              for rule, r in results.items()]
    lowest = min(results, key=lambda rule: results[rule]["loss"][-1])
    best = max(results, key=lambda rule: results[rule]["acc"][-1])
    full = results["full-batch gradient descent"]
    weakest = min(r["acc"][-1] for rule, r in results.items() if rule != "full-batch gradient descent")
    gap = 100 * (weakest - full["acc"][-1])
    lines.append(f"lowest training loss: {lowest}; best validation accuracy: {best}")
    lines.append(f"full-batch gradient descent made {full['updates']} updates in {len(full['loss'])} epochs and reached "
                 f"{100 * full['acc'][-1]:.1f}%, {abs(gap):.1f} points {'below' if gap > 0 else 'above'} the weakest "
                 "mini-batch rule" + (": one exact gradient per pass is worth less than many noisy ones" if gap > 0
                                      else ""))
    return lines


def main(argv=None):
    parser = parser_for(__doc__)
    parser.add_argument("--data_dir", default="data/mnist", help="folder with the four MNIST IDX files")
    parser.add_argument("--val_size", type=positive_int, default=5000)
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--logdir", default="runs/optimisers",
                        help="TensorBoard folder: each run writes a new version_<n> in it, with one run per rule")
    parser.add_argument("--out", help="PNG path of the figure (default: optimisers_mnist.png in the run's folder)")
    args = parser.parse_args(argv)
    try:
        data = MNISTDataModule(args.data_dir, download=False, val_size=args.val_size).load()
    except DATA_ERRORS as error:
        parser.error(data_error_line(error))
    folder = new_run_folder(parser, args.logdir)
    results = {}
    for rule in RULES:
        with SummaryWriter(str(folder / rule.replace(" ", "_"))) as writer:
            results[rule] = train(rule, data, args.epochs, writer)
    report(figure(results), args.out or folder / "optimisers_mnist.png", verdicts(results),
           f"; TensorBoard: tensorboard --logdir {args.logdir}")
    return results


if __name__ == "__main__":
    main()
