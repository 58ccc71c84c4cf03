"""Why an op's forward + backward costs what it costs: the tensor operations each one dispatches, manual against native.

    python -m benchmarks.op_profile [--device cuda]

For every op of benchmarks.run's table: how many aten operations (kernels, on a GPU launches) one forward + backward
dispatches, manual_bp's and torch's, with manual_bp's listed by name (its input checks among them), and each side's
time (torch.utils.benchmark, median). At 128x10 an operation costs a few µs whatever its size, so a loss's ratio
counts operations (and the Python of a custom Function), not arithmetic.
"""
import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.run import best_median, forward_backward, op_cases


class CountOps(TorchDispatchMode):
    """Counts the aten operations dispatched inside it, by name."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def dispatched(fn, inputs):
    with CountOps() as counter:
        forward_backward(fn, inputs)
    return counter.ops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"{'op (forward + backward)':<36}{'manual ops':>11}{'native ops':>11}{'manual µs':>11}{'native µs':>11}"
          f"{'ratio':>7}  manual's operations")
    for name, (manual, native, inputs) in op_cases(device).items():
        counts = {side: dispatched(fn, inputs) for side, fn in (("manual", manual), ("native", native))}
        times = {side: best_median("f(fn, x)", {"f": forward_backward, "fn": fn, "x": inputs}, 3, 0.2) * 1e6
                 for side, fn in (("manual", manual), ("native", native))}
        listed = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in counts["manual"].most_common())
        print(f"{name:<36}{sum(counts['manual'].values()):>11}{sum(counts['native'].values()):>11}"
              f"{times['manual']:>11.1f}{times['native']:>11.1f}{times['manual'] / times['native']:>7.2f}  {listed}")


if __name__ == "__main__":
    main()
