"""Is batch gradient descent the best way to use the error derivatives? The update rules' paths on two 2-D surfaces.

    python -m lecture.optimiser_paths                      # figure in runs/optimiser_paths.png, verdicts
    python -m lecture.optimiser_paths --out docs/figures/optimiser_paths.png    # the docs' figure

An ill-conditioned bowl f(x, y) = ½(x² + 20y²) (curvature 20 times steeper across the valley than along it) and
Rosenbrock's banana valley f(x, y) = (1 − x)² + 100(y − x²)², each from one start, with gradient descent, momentum,
Nesterov momentum, RMSprop, Adagrad and Adam from manual_bp.optim (the update rules written by hand). The figure
draws each path over the surface's contours; the verdict lines give how close each rule got to the minimum.
"""
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from lecture.command_line import parser_for, report
from manual_bp import optim

DEFAULT_OUT = Path("runs") / "optimiser_paths.png"


def bowl(point):
    """½(x² + 20y²): minimum 0 at (0, 0); the largest stable gradient-descent step is 2/20 = 0.1."""
    return 0.5 * (point[0] ** 2 + 20 * point[1] ** 2)


def rosenbrock(point):
    """(1 − x)² + 100(y − x²)²: minimum 0 at (1, 1), at the end of a long, curved, flat-bottomed valley."""
    return (1 - point[0]) ** 2 + 100 * (point[1] - point[0] ** 2) ** 2


# surface: (function, start, minimum, steps, plot limits ((x0, x1), (y0, y1)), {rule: (class, keyword arguments)})
# NOTE: one learning rate per rule and surface, picked by hand from a grid (3e-5 … 2, 1-2-5 per decade): the largest
# at which the rule's path is smooth (run `path` over the grid to see the others). Gradient descent on the bowl runs just under its limit 2/20 = 0.1, so
# that its zig-zag across the valley shows; at 0.05 it would land on y = 0 in one step, a lucky rate no real
# network offers.
SURFACES = {
    "bowl ½(x² + 20y²)": (bowl, (-4.5, 1.0), (0.0, 0.0), 60, ((-5, 1.5), (-1.5, 1.5)), {
        "gradient descent": (optim.SGD, {"lr": 0.09}),
        "momentum": (optim.SGD, {"lr": 0.02, "momentum": 0.9}),
        "Nesterov": (optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
        "RMSprop": (optim.RMSprop, {"lr": 0.1}),
        "Adagrad": (optim.Adagrad, {"lr": 1.0}),
        "Adam": (optim.Adam, {"lr": 0.2}),
    }),
    "Rosenbrock (1 − x)² + 100(y − x²)²": (rosenbrock, (-1.5, 2.0), (1.0, 1.0), 1000, ((-2, 2), (-1, 3)), {
        "gradient descent": (optim.SGD, {"lr": 1e-3}),
        "momentum": (optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
        "Nesterov": (optim.SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
        "RMSprop": (optim.RMSprop, {"lr": 5e-3}),
        "Adagrad": (optim.Adagrad, {"lr": 1.0}),
        "Adam": (optim.Adam, {"lr": 0.1}),
    }),
}


def path(function, start, optimizer_class, kwargs, steps):
    """The points visited: (steps + 1, 2), float64."""
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class([point], **kwargs)
    points = [point.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        function(point).backward()  # ∂f/∂(x, y) by autograd: the surface is not the point here, the rule is
        optimizer.step()
        points.append(point.detach().clone())
    return torch.stack(points)


def all_paths():
    """{surface: {rule: points}}."""
    return {surface: {rule: path(function, start, cls, kwargs, steps) for rule, (cls, kwargs) in rules.items()}
            for surface, (function, start, _, steps, _, rules) in SURFACES.items()}


def path_ratio(points, start, minimum):
    """How far the path travels, over the start's distance to the minimum (1: a straight line there; below 1: it
    stopped short)."""
    return ((points[1:] - points[:-1]).norm(dim=1).sum() / (start - minimum).norm()).item()


def verdicts(paths):
    """A line per surface and rule: the distance to the minimum at the end, the first step within 0.01 of it, and how
    much the path wanders (zig-zags, overshoots); then the closest and the straightest rule per surface."""
    lines, closest, straightest = [], {}, {}
    for surface, rules in paths.items():
        start, minimum = (torch.tensor(SURFACES[surface][i], dtype=torch.float64) for i in (1, 2))
        ends = {rule: (points[-1] - minimum).norm().item() for rule, points in rules.items()}
        ratios = {rule: path_ratio(points, start, minimum) for rule, points in rules.items()}
        arrived = []
        for rule, points in rules.items():
            close = ((points - minimum).norm(dim=1) < 0.01).nonzero()
            arrived += [rule] if len(close) else []
            reached = f"within 0.01 from step {int(close[0])}" if len(close) else "never within 0.01"
            diverged = " (diverged)" if not math.isfinite(ends[rule]) or ends[rule] > 1e3 else ""
            lines.append(f"{surface}: {rule:<16} ends {ends[rule]:.3g} from the minimum, {reached}; travels "
                         f"{ratios[rule]:.2f}x the start's distance to it{diverged}")
        name = surface.split()[0]
        closest[name] = min(ends, key=ends.get)
        straightest[name] = min(arrived, key=ratios.get) if arrived else "none got within 0.01"
    lines += [f"closest on the {name}: {rule}" for name, rule in closest.items()]
    lines += [f"straightest path to within 0.01 on the {name}: {rule}" for name, rule in straightest.items()]
    return lines


def figure(paths):
    """One panel per surface: log-spaced contours and every rule's path."""
    fig = Figure(figsize=(11, 4.6), dpi=72)
    for axes, (surface, rules) in zip(fig.subplots(1, 2), paths.items()):
        function, start, minimum, steps, (xlim, ylim), _ = SURFACES[surface]
        xs, ys = torch.meshgrid(torch.linspace(*xlim, 200), torch.linspace(*ylim, 200), indexing="xy")
        heights = function((xs, ys))
        levels = torch.logspace(-2, math.log10(heights.max().item()), 12).tolist()
        axes.contour(xs, ys, heights, levels=levels, colors="0.75", linewidths=0.6)
        for (rule, points), style in zip(rules.items(), ("-", "-", "--", "-", "-.", ":")):
            inside = points[(points[:, 0].abs() < 10) & (points[:, 1].abs() < 10)]
            axes.plot(inside[:, 0], inside[:, 1], style, linewidth=1.3, label=rule)
        axes.plot(*start, "ko", markersize=4)
        axes.plot(*minimum, "k*", markersize=9)
        axes.set(xlim=xlim, ylim=ylim, title=f"{surface}, {steps} steps")
    fig.axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = parser_for(__doc__)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="PNG path of the figure")
    args = parser.parse_args(argv)
    paths = all_paths()
    report(figure(paths), args.out, verdicts(paths))
    return paths


if __name__ == "__main__":
    main()
