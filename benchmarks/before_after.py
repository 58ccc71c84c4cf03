"""Epoch times of this checkout against another one (an older commit), on the same machine, one right after the other.

    mkdir -p .baseline && git archive <commit> | tar -x -C .baseline     # the older tree (git-ignored folder)
    python -m benchmarks.before_after --baseline .baseline --data_dir ../shared/datasets/mnist [--device cuda]
    python -m benchmarks.before_after --baseline .baseline --train_args "--model.hidden_sizes [16]"   # host time

Each round runs both trees, each in a fresh process (the two trees' `models` and `train` modules share names), the
older first in odd rounds and second in even ones; each process times (a) train.py's training epoch (the tree's own
`benchmarks.run.train_py_epoch`) and (b) the plain native loop with fused Adam (`plain_native_epoch`). Printed: the
median of every figure over the rounds, and the median of the per-round ratios after / before, so a machine whose
speed drifts between rounds moves both sides alike. The older tree must have those two functions with the device,
`extra` and `fused` arguments (commit 22fbf34 on). With a tiny network (--train_args) a CPU step is nearly all
Python (Lightning's loop, hooks, optimizer), the part of a step that a GPU does not speed up.
"""
import argparse
import shlex
import statistics
from pathlib import Path

from benchmarks.host_time import run_script

ROOT = Path(__file__).resolve().parents[1]
# What each process runs, inside the tree it times (cwd): the same two calls in both trees' benchmarks/run.py
EPOCH_SCRIPT = """
import json, sys, tempfile, warnings
import torch
from benchmarks.run import plain_native_epoch, train_py_epoch
data_dir, device, batch_limit, extra = sys.argv[1], torch.device(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
    warnings.filterwarnings("ignore")
    a = train_py_epoch(data_dir, tmp, batch_limit, device, extra=extra)
b = plain_native_epoch(data_dir, device, batch_limit, fused=True)
print("EPOCHS", json.dumps({"a": a, "b_fused": b}))
"""


def epochs(tree, data_dir, device, batch_limit, train_args):
    """{"a": seconds, "b_fused": seconds} of one fresh process in `tree`."""
    return run_script(EPOCH_SCRIPT, "EPOCHS", [str(Path(data_dir).resolve()), device, str(batch_limit), *train_args],
                      f"the epoch benchmark in {tree}", Path(tree))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other tree (the 'before'), with benchmarks/run.py")
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_limit", type=int, default=10**9, help="training batches per epoch (a smoke test)")
    parser.add_argument("--train_args", default="", help="more train.py arguments for (a), in both trees")
    args = parser.parse_args(argv)
    baseline = Path(args.baseline).resolve()
    if not (baseline / "benchmarks" / "run.py").is_file():
        parser.error(f"--baseline must be a tree with benchmarks/run.py, got {args.baseline}")
    rounds = []
    for number in range(args.rounds):
        order = {"before": baseline, "after": ROOT} if number % 2 == 0 else {"after": ROOT, "before": baseline}
        row = {side: epochs(tree, args.data_dir, args.device, args.batch_limit, shlex.split(args.train_args))
               for side, tree in order.items()}
        rounds.append(row)
        sides = (f"{side} (a) {row[side]['a']:.3f} s, (b fused) {row[side]['b_fused']:.3f} s" for side in order)
        print(f"round {number + 1}: " + "; ".join(sides), flush=True)
    print(f"\nepoch seconds on {args.device}, medians of {args.rounds} rounds (before = {baseline}):")
    print(f"{'':<22}{'before':>10}{'after':>10}{'after/before':>14}")
    for key, label in (("a", "(a) train.py"), ("b_fused", "(b) plain, fused Adam")):
        before, after = (statistics.median(row[side][key] for row in rounds) for side in ("before", "after"))
        ratio = statistics.median(row["after"][key] / row["before"][key] for row in rounds)
        print(f"{label:<22}{before:>10.3f}{after:>10.3f}{ratio:>14.2f}")
    if not args.train_args:  # NOTE: (b) always trains the default network; with other train.py arguments a/b is moot
        a_over_b = {side: statistics.median(row[side]["a"] / row[side]["b_fused"] for row in rounds)
                    for side in ("before", "after")}
        print(f"{'a / b fused':<22}{a_over_b['before']:>10.2f}{a_over_b['after']:>10.2f}")
    return rounds


if __name__ == "__main__":
    main()
