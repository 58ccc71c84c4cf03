"""Speed and memory of manual_bp against native PyTorch: every figure a ratio of two runs in this one process.

    python -m benchmarks.run --data_dir ../shared/datasets/mnist     # prints the table, writes benchmarks/results/
    python -m benchmarks.run --quick ...                             # fewer repeats, for a smoke test

1. per op: forward + backward time, manual / native (torch.utils.benchmark; median of alternating rounds)
2. training step: 784-800-10 ReLU MLP, softmax cross-entropy, Adam, batch 128, plain loop: manual / native (also
   both steps timed in turns of 20 in one loop);
   and the step as train.py runs it, without Lightning: MNISTClassifier's forward (on CUDA made CUDA graphs by
   models/training_steps.py), the loss's backward, the epoch sums and fused Adam
3. epoch time of three pipelines: (a) train.py (LightningModule + DataModule + manual layers; also with every
   step eager and without the step-wise last.ckpt), (b) a plain loop with native layers over in-memory tensors
   (torch's default Adam; also fused Adam), (c) torchvision MNIST with ToTensor/Normalize through a DataLoader
   into the usual LightningModule with native layers; ratios a/b, b/a and c/a, medians over alternating rounds
   (--pipeline_rounds, 3) of a, a without step checkpoints, b, b fused and c
4. one optimizer step (Adam, SGD momentum) over the MLP's parameters: manual_bp.optim against torch.optim's
   single-tensor loop, foreach and fused kernels
5. bytes saved for backward per op (saved_tensors_hooks), manual vs native; on CUDA the peak memory a step
   allocates above weights, optimizer state and batch
6. achieved GFLOP/s of the training step against this machine's measured matmul rate
"""
import argparse
import gzip
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

import manual_bp
import manual_bp.optim
import manual_bp.functional as MF
from benchmarks.timing import EpochTimer, synchronize
from models.classifier import MNISTClassifier
from models.data import MNISTDataModule
from models.idx import IDX_FILES
from models.mlp import build_mlp, classification_loss
from models.training_steps import TrainingSteps, graph_forward

ROOT = Path(__file__).resolve().parents[1]
BATCH, SIZES = 128, (784, 800, 10)


def op_cases(device):
    def randn(*shape, grad=True):
        return torch.randn(*shape, device=device, requires_grad=grad)

    probs = torch.rand(BATCH, 10, device=device).clamp(0.01, 0.99).requires_grad_()
    target, labels = torch.rand(BATCH, 10, device=device), torch.randint(10, (BATCH,), device=device)
    return {
        "linear 128x784->800 (first layer)": (MF.linear, F.linear, (randn(BATCH, 784, grad=False), randn(800, 784),
                                                                    randn(800))),
        "linear 128x800->10": (MF.linear, F.linear, (randn(BATCH, 800), randn(10, 800), randn(10))),
        "relu 128x800": (MF.relu, torch.relu, (randn(BATCH, 800),)),
        "sigmoid 128x800": (MF.sigmoid, torch.sigmoid, (randn(BATCH, 800),)),
        "tanh 128x800": (MF.tanh, torch.tanh, (randn(BATCH, 800),)),
        "mse_loss 128x10": (MF.mse_loss, F.mse_loss, (randn(BATCH, 10), target)),
        "binary_cross_entropy 128x10": (MF.binary_cross_entropy, F.binary_cross_entropy, (probs, target)),
        "bce_with_logits 128x10": (MF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                                   (randn(BATCH, 10), target)),
        "cross_entropy 128x10": (MF.cross_entropy, F.cross_entropy, (randn(BATCH, 10), labels)),
    }


def forward_backward(fn, inputs):
    output = fn(*inputs)
    output.backward(torch.ones_like(output))


def best_median(stmt, env, repeats, min_run_time):
    # NOTE: Timer runs on one thread unless told otherwise; training uses all of torch's threads
    timer = Timer(stmt, globals=env, num_threads=torch.get_num_threads())
    return min(timer.blocked_autorange(min_run_time=min_run_time).median for _ in range(repeats))


def time_pair(make_stmt_env, rounds, min_run_time):
    """(manual seconds, native seconds, ratio): medians over rounds that each time manual, then native.

    NOTE: on a shared VM the load drifts by tens of percent within a minute; the ratio is the median of the
    per-round ratios, so each ratio compares two measurements taken seconds apart.
    """
    times = {"manual": [], "native": []}
    for _ in range(rounds):
        for backend in times:
            stmt, env = make_stmt_env(backend)
            times[backend].append(best_median(stmt, env, 1, min_run_time))
    ratios = [m / n for m, n in zip(times["manual"], times["native"])]
    return statistics.median(times["manual"]), statistics.median(times["native"]), statistics.median(ratios)


def bench_ops(device, repeats, min_run_time):
    rows = {}
    for name, (manual, native, inputs) in op_cases(device).items():
        def stmt_env(backend, manual=manual, native=native, inputs=inputs):
            fn = manual if backend == "manual" else native
            return "forward_backward(fn, inputs)", {"forward_backward": forward_backward, "fn": fn, "inputs": inputs}
        manual_s, native_s, ratio = time_pair(stmt_env, repeats, min_run_time)
        rows[name] = {"manual_us": manual_s * 1e6, "native_us": native_s * 1e6, "ratio": ratio}
    return rows


def saved_bytes(fn, inputs):
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(*inputs)
    return sum(sizes)


def bench_memory(device):
    return {name: {"manual_bytes": saved_bytes(manual, inputs), "native_bytes": saved_bytes(native, inputs)}
            for name, (manual, native, inputs) in op_cases(device).items()}


def step_parts(backend, device, sizes=SIZES, **adam):
    """The benchmarked MLP (layer sizes `sizes`), its Adam and one batch, from the same seed for every variant."""
    torch.manual_seed(0)
    net = build_mlp(sizes[0], sizes[1:-1], sizes[-1], "relu", backend).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, **adam)
    x, y = torch.randn(BATCH, sizes[0], device=device), torch.randint(sizes[-1], (BATCH,), device=device)
    return net, optimizer, x, y


def training_step_fn(backend, device, sizes=SIZES, **adam):
    net, optimizer, x, y = step_parts(backend, device, sizes, **adam)

    def step():
        optimizer.zero_grad(set_to_none=True)
        classification_loss(net(x), y, "cross_entropy", backend).backward()
        optimizer.step()
    return step


def step_without_lightning_fn(device):
    """The step as train.py runs it, without Lightning: MNISTClassifier's forward (on CUDA made graphs by
    graph_forward, as TrainingSteps does), the loss and its backward, the epoch sums, fused Adam."""
    torch.manual_seed(0)
    model = MNISTClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    images, labels = torch.randn(BATCH, 28, 28, device=device), torch.randint(10, (BATCH,), device=device)
    sums = TrainingSteps()
    sums.on_train_epoch_start(None, model)  # NOTE: the epoch's sums on the model's device (the trainer is not read)
    if device.type == "cuda":
        graph_forward(model, images)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model.training_step((images, labels), 0)
        out["loss"].backward()
        optimizer.step()
        sums.add_step(out["loss"].detach(), out["preds"], labels)  # the epoch sums, as TrainingSteps takes them
    return step


def interleaved_steps(device, rounds=15, steps=20, sizes=SIZES, **adam):
    """Manual and native training step of the `sizes` MLP with both steps built once and timed in turns of `steps`
    steps, the order swapped every round: {"manual_us", "native_us": the median µs a step, "ratio": the median of the
    rounds' ratios (each compares two stretches a few ms apart)}. `adam`: torch.optim.Adam's flags, e.g. fused=True."""
    steps_of = {backend: training_step_fn(backend, device, sizes, **adam) for backend in ("manual", "native")}
    for step in steps_of.values():  # the optimizer's state made, the caches warm
        for _ in range(5):
            step()
    ratios, per_step = [], {"manual": [], "native": []}
    for number in range(rounds):
        seconds = {}
        for backend in (("manual", "native") if number % 2 else ("native", "manual")):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                steps_of[backend]()
            synchronize(device)
            seconds[backend] = time.perf_counter() - start
            per_step[backend].append(seconds[backend] / steps * 1e6)
        ratios.append(seconds["manual"] / seconds["native"])
    return {"manual_us": statistics.median(per_step["manual"]), "native_us": statistics.median(per_step["native"]),
            "ratio": statistics.median(ratios)}


def bench_training_step(device, repeats, min_run_time):
    def stmt_env(backend):
        return "step()", {"step": training_step_fn(backend, device)}
    manual_s, native_s, ratio = time_pair(stmt_env, repeats, min_run_time)
    train_step_s = best_median("step()", {"step": step_without_lightning_fn(device)}, repeats, min_run_time)
    flops = 6 * BATCH * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # forward 2, backward 4 per MAC
    a, b = torch.randn(BATCH, 784, device=device), torch.randn(784, 800, device=device)
    big = torch.randn(2048, 2048, device=device)
    matmul_step = best_median("a @ b", {"a": a, "b": b}, repeats, min_run_time)
    matmul_big = best_median("m @ m", {"m": big}, repeats, min_run_time)
    return {"manual_ms": manual_s * 1e3, "native_ms": native_s * 1e3, "ratio": ratio,
            "ratio_interleaved": interleaved_steps(device)["ratio"], "train_step_ms": train_step_s * 1e3,
            "achieved_gflops_manual": flops / manual_s / 1e9, "achieved_gflops_native": flops / native_s / 1e9,
            "matmul_gflops_128x784x800": 2 * BATCH * 784 * 800 / matmul_step / 1e9,
            "matmul_gflops_2048": 2 * 2048**3 / matmul_big / 1e9}


def bench_optimizers(device, repeats, min_run_time):
    """One optimizer step over the 784-800-10 MLP's parameters (gradients in place): manual_bp.optim's update rule
    against torch.optim's single-tensor loop, its foreach kernels and its fused kernel, for Adam and SGD momentum."""
    torch.manual_seed(0)
    params = [p.detach().requires_grad_() for p in build_mlp(SIZES[0], SIZES[1:-1], SIZES[-1]).to(device).parameters()]
    for param in params:
        param.grad = torch.randn_like(param) * 1e-3
    rows = {}
    for name, kwargs in (("Adam", {"lr": 1e-3}), ("SGD", {"lr": 1e-2, "momentum": 0.9})):
        variants = {"manual": getattr(manual_bp.optim, name)(params, **kwargs)}
        for mode in ("foreach", "fused"):
            variants[f"torch {mode}"] = getattr(torch.optim, name)(params, **kwargs, **{mode: True})
        variants["torch single"] = getattr(torch.optim, name)(params, **kwargs, foreach=False)
        for optimizer in variants.values():
            optimizer.step()  # the state exists: what is timed is a step
        # NOTE: the variants in alternating rounds, each ratio the median of its rounds' (as time_pair does)
        rounds = [{variant: best_median("optimizer.step()", {"optimizer": optimizer}, 1, min_run_time)
                   for variant, optimizer in variants.items()} for _ in range(repeats)]
        rows[name] = {f"{variant}_us": statistics.median(row[variant] for row in rounds) * 1e6 for variant in variants}
        rows[name]["manual_over_fused"] = statistics.median(row["manual"] / row["torch fused"] for row in rounds)
        rows[name]["manual_over_single"] = statistics.median(row["manual"] / row["torch single"] for row in rounds)
    return rows


def plain_native_epoch(data_dir, device, batch_limit, fused=None):
    """(b): torch.nn layers, batches cut from in-memory tensors, the usual zero_grad/backward/step loop
    (torch's default Adam, or its fused kernel)."""
    images, labels = MNISTDataModule(str(data_dir), download=False).load()["train"]
    images, labels = images.flatten(1).to(device), labels.to(device)
    net = build_mlp(784, (800,), 10, "relu", "native").to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
    order = torch.randperm(len(labels), device=device)
    starts = list(range(0, len(labels), BATCH))[:batch_limit]
    for _ in range(2):  # warm-up (kernels, allocator, optimizer state), then the timed epoch
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images[:BATCH]), labels[:BATCH]).backward()
        optimizer.step()
    synchronize(device)
    start_time = time.perf_counter()
    for start in starts:
        index = order[start: start + BATCH]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images[index]), labels[index]).backward()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start_time) * len(range(0, len(labels), BATCH)) / len(starts)


def train_py_epoch(data_dir, save_dir, batch_limit, device, cuda_graph=True, extra=()):
    """(a): the train.py path itself (LightningCLI, default config), training epochs only, timed by a callback."""
    from train import cli_main

    EpochTimer.seconds.clear()
    limit = ["--trainer.limit_train_batches", str(batch_limit)] if batch_limit < 10**9 else []
    with warnings.catch_warnings():
        # NOTE: LightningCLI warns when it gets args while sys.argv holds this script's own options
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli_main(["fit", "--data.data_dir", str(data_dir), "--data.download", "false", "--trainer.max_epochs", "2",
                  "--trainer.accelerator", device.type, "--training_steps.cuda_graph", str(cuda_graph).lower(),
                  "--data.max_shift", "0",  # the same work as (b) and (c): no augmentation
                  "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
                  "--trainer.logger.init_args.save_dir", str(save_dir),
                  "--trainer.callbacks+=benchmarks.timing.EpochTimer", *limit, *extra])
    batches = min(batch_limit, len(range(0, 55000, BATCH)))
    return EpochTimer.seconds[-1] * len(range(0, 55000, BATCH)) / batches  # the second epoch: warm


class CommonRecipeModule(pl.LightningModule):
    """The LightningModule of the usual tutorial: torch.nn layers, automatic optimization, the loss logged."""

    def __init__(self):
        super().__init__()
        self.net = build_mlp(784, (800,), 10, "relu", "native")

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.net(images.flatten(1)), labels)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def common_recipe_epoch(data_dir, save_dir, batch_limit, device):
    """(c): torchvision MNIST + ToTensor/Normalize per image through a DataLoader, native layers in Lightning."""
    from torchvision import datasets, transforms

    raw = Path(save_dir) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES.values():
        (raw / name).write_bytes(gzip.decompress((Path(data_dir) / f"{name}.gz").read_bytes()))
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(str(save_dir), train=True, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0)
    EpochTimer.seconds.clear()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=min(batch_limit, len(loader)), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[EpochTimer()], accelerator=device.type, devices=1)
    trainer.fit(CommonRecipeModule(), loader)
    return EpochTimer.seconds[-1] * len(range(0, 55000, BATCH)) / min(batch_limit, len(loader))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="one round and partial epochs (a smoke test)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating manual/native rounds per figure")
    parser.add_argument("--pipeline_rounds", type=int, default=3, help="alternating rounds of the epoch pipelines")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<device>.json)")
    parser.add_argument("--skip_pipelines", action="store_true",
                        help="the op table, memory, training and optimizer steps only, not the epochs of (a), (b), (c)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats, min_run_time, batch_limit = (1, 0.1, 60) if args.quick else (args.rounds, 0.3, 10**9)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}"
    results = {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "ops": bench_ops(device, repeats, min_run_time), "saved_for_backward": bench_memory(device),
               "training_step": bench_training_step(device, repeats, min_run_time),
               "optimizer_step": bench_optimizers(device, repeats, min_run_time)}
    if args.skip_pipelines:
        print_table(results)
        return write(results, args.out, device)
    with tempfile.TemporaryDirectory() as tmp:
        # NOTE: the pipelines in alternating rounds and each ratio the median of its rounds' ratios: the VM's speed
        # drifts within minutes, so a ratio compares runs taken seconds apart
        rounds = [{"a": train_py_epoch(args.data_dir, Path(tmp) / f"a{number}", batch_limit, device),
                   "a_no_ckpt": train_py_epoch(args.data_dir, Path(tmp) / f"a_no_ckpt{number}", batch_limit, device,
                                               extra=["--resume_checkpoint.every_n_train_steps", "0"]),
                   "b": plain_native_epoch(args.data_dir, device, batch_limit),
                   "b_fused": plain_native_epoch(args.data_dir, device, batch_limit, fused=True),
                   "c": common_recipe_epoch(args.data_dir, Path(tmp) / f"c{number}", batch_limit, device)}
                  for number in range(1 if args.quick else args.pipeline_rounds)]
        a_eager = train_py_epoch(args.data_dir, Path(tmp) / "a_eager", batch_limit, device, cuda_graph=False)

    def median(key):
        return statistics.median(row[key] for row in rounds)

    def ratio(top, bottom):
        return statistics.median(row[top] / row[bottom] for row in rounds)

    results["pipelines"] = {"a_train_py_s": median("a"), "a_train_py_eager_steps_s": a_eager,
                            "a_train_py_no_step_checkpoints_s": median("a_no_ckpt"),
                            "b_plain_native_loop_s": median("b"), "b_plain_native_loop_fused_adam_s": median("b_fused"),
                            "c_common_recipe_s": median("c"), "a_over_b": ratio("a", "b"),
                            "a_over_b_fused": ratio("a", "b_fused"), "b_over_a": ratio("b", "a"),
                            "c_over_a": ratio("c", "a"), "a_over_a_no_ckpt": ratio("a", "a_no_ckpt"), "rounds": rounds}
    if device.type == "cuda":
        for backend in ("manual", "native"):
            step = training_step_fn(backend, device)
            step()  # the optimizer state exists: what is left is the step's own memory
            synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            results["training_step"][f"cuda_step_peak_bytes_{backend}"] = torch.cuda.max_memory_allocated(device) - base
    print_table(results)
    return write(results, args.out, device)


def write(results, out, device):
    out = Path(out) if out else ROOT / "benchmarks" / "results" / f"{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}")
    return results


def print_table(results):
    print(f"\ndevice: {results['device']}, {results['threads']} threads, torch {results['torch']}")
    print(f"\n{'op (forward + backward)':<36} {'manual us':>10} {'native us':>10} {'ratio':>6} "
          f"{'saved B manual':>15} {'saved B native':>15}")
    for name, row in results["ops"].items():
        memory = results["saved_for_backward"][name]
        print(f"{name:<36} {row['manual_us']:>10.1f} {row['native_us']:>10.1f} {row['ratio']:>6.2f} "
              f"{memory['manual_bytes']:>15,} {memory['native_bytes']:>15,}")
    step = results["training_step"]
    print(f"\ntraining step 784-800-10, Adam, batch 128: manual {step['manual_ms']:.2f} ms, native "
          f"{step['native_ms']:.2f} ms, ratio {step['ratio']:.3f} (interleaved in one loop "
          f"{step['ratio_interleaved']:.3f}); train.py's step without Lightning "
          f"(MNISTClassifier{', CUDA graph replays' if 'cuda_step_peak_bytes_manual' in step else ''}, "
          f"fused Adam) {step['train_step_ms']:.3f} ms")
    print(f"achieved {step['achieved_gflops_manual']:.1f} GFLOP/s (native {step['achieved_gflops_native']:.1f}); "
          f"matmul 128x784x800 {step['matmul_gflops_128x784x800']:.1f} GFLOP/s, 2048^3 "
          f"{step['matmul_gflops_2048']:.1f} GFLOP/s")
    for name, row in results["optimizer_step"].items():
        print(f"{name} step over the MLP's parameters: manual_bp.optim {row['manual_us']:.0f} us, torch.optim single "
              f"tensor {row['torch single_us']:.0f} us, foreach {row['torch foreach_us']:.0f} us, fused "
              f"{row['torch fused_us']:.0f} us: manual / fused {row['manual_over_fused']:.2f}, manual / single tensor "
              f"{row['manual_over_single']:.2f}")
    if "cuda_step_peak_bytes_manual" in step:
        print(f"CUDA memory a step allocates above weights, optimizer state and batch (peak): manual "
              f"{step['cuda_step_peak_bytes_manual']:,} B, native {step['cuda_step_peak_bytes_native']:,} B")
    if "pipelines" not in results:
        return
    p = results["pipelines"]
    print(f"\nepoch (55,000 digits): (a) train.py {p['a_train_py_s']:.3f} s (cuda_graph false: "
          f"{p['a_train_py_eager_steps_s']:.3f} s; without the step-wise last.ckpt: "
          f"{p['a_train_py_no_step_checkpoints_s']:.3f} s), (b) plain native loop {p['b_plain_native_loop_s']:.3f} s "
          f"(fused Adam: {p['b_plain_native_loop_fused_adam_s']:.3f} s), (c) common recipe "
          f"{p['c_common_recipe_s']:.3f} s")
    rounds = "; ".join(f"{row['a'] / row['b_fused']:.2f}, {row['c'] / row['a']:.2f}" for row in p["rounds"])
    print(f"a/b {p['a_over_b']:.2f} (a/b with fused Adam in b: {p['a_over_b_fused']:.2f}), b/a {p['b_over_a']:.2f}, "
          f"c/a {p['c_over_a']:.2f}, a with / without step checkpoints {p['a_over_a_no_ckpt']:.2f} (medians over "
          f"rounds; a/b fused, c/a per round: {rounds})")


if __name__ == "__main__":
    main()
