"""Host time of a training step: train.py against a thin Lightning module, and what each per-step callback costs.

    python -m benchmarks.host_time --data_dir data/mnist [--rounds 3] [--hidden "[16]"] [--device cuda]

With a tiny network (hidden [16]) a CPU step is nearly all host time (Python: Lightning's loop, the hooks, the
layers' Functions, the optimizer), the part of a step that a GPU does not speed up. Every variant runs in a fresh
process and times epochs 2 to 4 of four training epochs (no validation), keeping the fastest; rounds alternate the
variants, and each figure is the minimum over the rounds (the least disturbed epoch); the last column is the median of
each round's own ratio to thin instead. Variants:

- thin: a LightningModule as in Lightning's examples: torch.nn layers, automatic optimization, the loss returned,
  fused Adam, on the same on-device batches (models.data.MNISTDataModule), no callbacks, no logger.
- train.py: `python train.py fit` with the default config and `--model.hidden_sizes [16]` (and, as for thin, no random
  shift of the digits: benchmarks.run.train_py_epoch gives `--data.max_shift 0`).
- train.py without X: the same with the callback X taken out (a benchmark-only callback removes it at setup).
- train.py, native layers: `--model.backend native` (the step path without the handwritten Functions).
- before: train.py: train.py in another tree (--baseline, e.g. an older commit: `git worktree add .baseline <commit>`),
  which must have benchmarks.run.train_py_epoch and benchmarks.timing.EpochTimer.
Last, in the benchmark's own process, the same MLP's training step without Lightning with manual_bp's layers against
torch.nn's (interleaved rounds): the handwritten layers' part of the gap, free of the processes' noise.
`--hooks` instead times, inside one train.py run of 3 epochs, every per-step hook of each callback in train.py's
CallbackGroup (a clock around each call): µs a step per callback and hook, without the noise of comparing
processes, but not Lightning's own cost of calling a hook; and what each call of LightningModule.log costs.
`--callbacks` measures that cost (benchmarks/callback_cost.py): what callbacks that override no hook (listed, or as
one CallbackGroup) and train.py's two checkpoints add to the thin module's step. `--toggle` measures each of
train.py's own callbacks inside a train.py run of 8 epochs, taken out and put back every 10 steps: a step's steady
cost, Lightning's calls of its hooks included, the work it does every N steps not (that is `--hooks`').
`--device cuda` runs the same on a GPU, where a step is host time too: the kernels of a small MLP take less time
than their launches.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = len(range(0, 55000, 128))  # the training batches of an epoch at batch size 128
HOOK_EPOCHS = 3  # --hooks: one train.py run of this many epochs
# callback class names train.py adds (per step: on_train_batch_start/end, on_before_optimizer_step)
CALLBACKS = ("TrainingSteps", "GradientStatistics", "NativeGradientCheck", "LayerStatistics", "LearningRateMonitor",
             "ModelCheckpoint", "GracefulInterrupt", "EpochSummary", "RandomState", "FollowMovedRunFolder",
             "TestReport")

EPOCH_SCRIPT = """
import json, sys, tempfile, warnings
EPOCHS = 4
warnings.filterwarnings("ignore")
import torch
data_dir, variant, hidden, device, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
if variant == "thin":
    from benchmarks.host_time import thin_epoch
    seconds = thin_epoch(data_dir, hidden, device)
else:
    from benchmarks.run import train_py_epoch
    from benchmarks.timing import EpochTimer
    with tempfile.TemporaryDirectory() as tmp:
        train_py_epoch(data_dir, tmp, 10**9, torch.device(device),
                       extra=["--model.hidden_sizes", hidden, "--trainer.max_epochs", str(EPOCHS), *extra])
    seconds = min(EpochTimer.seconds[1:])
print("EPOCH", json.dumps(seconds))
"""


HOOKS_SCRIPT = """
import collections, json, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
import pytorch_lightning as pl
import torch
import models.callback_group as group
from benchmarks.run import train_py_epoch
data_dir, hidden, device, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seconds = collections.defaultdict(float)
index_hooks = group.CallbackGroup._index_hooks

def timed(method, name):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
    return call

def timed_index_hooks(self):  # NOTE: the group calls the members' hooks it indexed; each is wrapped in a clock
    index_hooks(self)
    self.hooks = {hook: [timed(method, f"{type(method.__self__).__name__}.{hook}") for method in methods]
                  for hook, methods in self.hooks.items()}

group.CallbackGroup._index_hooks = timed_index_hooks
calls, log = [], pl.LightningModule.log

def timed_log(self, *args, **kwargs):  # NOTE: what Lightning's own logging costs a call, wherever it is called
    start = time.perf_counter()
    try:
        return log(self, *args, **kwargs)
    finally:
        calls.append(time.perf_counter() - start)

pl.LightningModule.log = timed_log
with tempfile.TemporaryDirectory() as tmp:
    train_py_epoch(data_dir, tmp, 10**9, torch.device(device),
                   extra=["--model.hidden_sizes", hidden, "--trainer.max_epochs", str(epochs)])
print("HOOKS", json.dumps({"hooks": seconds, "log_calls": calls}))
"""


def hook_times(data_dir, hidden, device="cpu"):
    """({callback.hook: µs a training step}, [µs of each LightningModule.log call]) over one train.py run (see
    --hooks in the module docstring)."""
    times = run_script(HOOKS_SCRIPT, "HOOKS", [str(data_dir), hidden, device, str(HOOK_EPOCHS)], "--hooks")
    return ({name: total / (HOOK_EPOCHS * STEPS) * 1e6 for name, total in times["hooks"].items()},
            [seconds * 1e6 for seconds in times["log_calls"]])


def thin_epoch(data_dir, hidden, device="cpu", callbacks=(), epochs=4):
    """Seconds of the fastest of epochs 2-4 (2-`epochs`) of the thin module (see the module docstring), with
    `callbacks` added to its trainer."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from pytorch_lightning.callbacks import Checkpoint

    from benchmarks.timing import EpochTimer
    from models.data import MNISTDataModule
    from models.mlp import build_mlp

    class ThinModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = build_mlp(784, tuple(json.loads(hidden)), 10, "relu", "native")

        def training_step(self, batch, batch_idx):
            images, labels = batch
            return F.cross_entropy(self.net(images.flatten(1)), labels)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

    EpochTimer.seconds.clear()
    trainer = pl.Trainer(max_epochs=epochs, limit_val_batches=0, logger=False,
                         enable_checkpointing=any(isinstance(callback, Checkpoint) for callback in callbacks),
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[EpochTimer(), *callbacks],
                         accelerator=torch.device(device).type, devices=1)
    trainer.fit(ThinModule(), datamodule=MNISTDataModule(data_dir, download=False))
    return min(EpochTimer.seconds[1:])


def variants():
    """{name: (variant, train.py arguments)}."""
    out = {"thin": ("thin", []), "train.py": ("train", [])}
    for name in CALLBACKS:
        if name != "TestReport":  # NOTE: test-time only
            out[f"train.py without {name}"] = ("train", ["--trainer.callbacks+=benchmarks.timing.Without",
                                                         f"--trainer.callbacks.names=[{name}]"])
    out["train.py without all of them"] = ("train", ["--trainer.callbacks+=benchmarks.timing.Without",
                                                     f"--trainer.callbacks.names=[{', '.join(CALLBACKS)}]"])
    out["train.py, native layers"] = ("train", ["--model.backend", "native"])
    return out


def epoch_seconds(data_dir, variant, hidden, device, extra, tree=ROOT):
    # NOTE: absolute, since the process runs in `tree` (the baseline's folder for "before: train.py")
    return run_script(EPOCH_SCRIPT, "EPOCH", [str(Path(data_dir).resolve()), variant, hidden, device, *extra],
                      f"{variant} {extra}", tree)


def run_script(script, tag, args, what, tree=ROOT):
    """The JSON that `script` prints after `tag` when run in a fresh process in `tree`; a RuntimeError naming `what`
    and the process's last stderr if it fails."""
    # NOTE: the tree first on the import path, before what PYTHONPATH held (or an editable install points at)
    path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=tree, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": path})
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"{tag} ")]
    if result.returncode or not lines:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(f"{tag} "))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", default="[16]", help="--model.hidden_sizes of every variant")
    parser.add_argument("--only", nargs="*", help="only these variants (names as printed)")
    parser.add_argument("--baseline", help="another tree whose train.py is timed too ('before: train.py')")
    parser.add_argument("--hooks", action="store_true", help="time each callback's hooks inside one run instead")
    parser.add_argument("--callbacks", action="store_true",
                        help="what Lightning's hook calls of a callback cost a step, and train.py's checkpoints")
    parser.add_argument("--toggle", action="store_true",
                        help="what each of train.py's callbacks costs a step inside a train.py run (steady cost)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the host time of a GPU step (the same variants)")
    args = parser.parse_args(argv)
    if args.hooks:
        times, log_calls = hook_times(args.data_dir, args.hidden, args.device)
        print(f"\n{args.device} host time of train.py's callback hooks, hidden {args.hidden}, one run of "
              f"{HOOK_EPOCHS} epochs:")
        for name, micros in sorted(times.items(), key=lambda item: -item[1]):
            print(f"{name:<58}{micros:>8.1f} µs/step")
        print(f"{'all of them':<58}{sum(times.values()):>8.1f} µs/step")
        if log_calls:
            print(f"LightningModule.log: {len(log_calls)} calls, median {statistics.median(log_calls):.0f} µs a call")
        return times
    if args.callbacks:
        from benchmarks.callback_cost import callback_costs

        return print_costs(callback_costs(args.data_dir, args.hidden, args.device),
                           f"host time the callbacks below add to a step of the thin module, hidden {args.hidden}",
                           args.device)
    if args.toggle:
        from benchmarks.callback_cost import train_py_costs

        return print_costs(train_py_costs(args.data_dir, args.hidden, args.device),
                           f"steady host time of train.py's callbacks, hidden {args.hidden}", args.device)
    table = {name: spec for name, spec in variants().items() if not args.only or name in args.only}
    if args.baseline:
        table["before: train.py"] = ("train", [])
    seconds = {name: [] for name in table}
    for number in range(args.rounds):
        names = list(table) if number % 2 == 0 else list(reversed(table))
        for name in names:
            variant, extra = table[name]
            tree = Path(args.baseline).resolve() if name.startswith("before") else ROOT
            seconds[name].append(epoch_seconds(args.data_dir, variant, args.hidden, args.device, extra, tree))
            print(f"round {number + 1} {name}: {seconds[name][-1]:.3f} s", file=sys.stderr, flush=True)
    best = {name: min(values) for name, values in seconds.items()}
    # NOTE: each round's variants run within a minute or two of each other, so a round's own ratio moves less with
    # the VM's speed than the ratio of the minima
    per_round = {name: statistics.median(value / thin for value, thin in zip(values, seconds["thin"]))
                 for name, values in seconds.items()} if "thin" in seconds else {}
    reference = best.get("train.py")
    print(f"\n{args.device} host time of a training step, hidden {args.hidden}, min of {args.rounds} fresh processes "
          f"(last column: the median of the rounds' own ratios to thin):")
    print(f"{'variant':<42}{'epoch s':>9}{'ms/step':>9}{'vs thin':>9}{'saved ms/step':>15}{'round ratio':>13}")
    for name, value in best.items():
        vs_thin = f"{value / best['thin']:.2f}" if "thin" in best else ""
        round_ratio = f"{per_round[name]:.2f}" if name in per_round else ""
        saved = f"{(reference - value) / STEPS * 1e3:.3f}" if reference and name.startswith("train.py ") else ""
        print(f"{name:<42}{value:>9.3f}{value / STEPS * 1e3:>9.3f}{vs_thin:>9}{saved:>15}{round_ratio:>13}")
    layers = layers_step(args.hidden, args.device)
    print(f"\nthe layers' share, in this one process: a training step of the same MLP without Lightning (forward, "
          f"loss, backward, fused Adam), {layers['manual_us']:.0f} µs with manual_bp's layers against "
          f"{layers['native_us']:.0f} µs with torch.nn's ({layers['ratio']:.2f}×, median of interleaved rounds)")
    return best


def print_costs(costs, title, device):
    """Print {name: µs a step} of the alternating windows (--callbacks, --toggle) under `title`; return them."""
    print(f"\n{device} {title} (windows of steps with and without them, alternating, in one run each):")
    for name, micros in costs.items():
        print(f"{name:<52}{micros:>+8.1f} µs/step")
    return costs


def layers_step(hidden, device):
    """What the handwritten layers cost a host-bound step, without process-to-process noise: benchmarks.run's
    interleaved manual / native training step of the 784-hidden-10 MLP, fused Adam on both sides."""
    import torch

    from benchmarks.run import interleaved_steps

    return interleaved_steps(torch.device(device), sizes=(784, *json.loads(hidden), 10), fused=True)


if __name__ == "__main__":
    main()
