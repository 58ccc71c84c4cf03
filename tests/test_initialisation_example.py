"""The initialisation lecture example on the shipped MNIST slice, its verdicts, and the per-layer statistics
callback of ordinary training runs."""
import math
import re

import pytest
import torch
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lecture import initialisation
from models.callbacks import EpochlessTensorBoardLogger, LayerStatistics
from models.training_steps import TrainingSteps
from tests.helpers import cli_args, doc_text_after, fit
from train import cli_main


@pytest.fixture(scope="module")
def example(tmp_path_factory, mnist_slice):
    """python -m lecture.initialisation on the slice: (its verdicts by "activation, start", figure path, logdir)."""
    folder = tmp_path_factory.mktemp("initialisation")
    figure, logdir = folder / "initialisation.png", folder / "runs"
    results = initialisation.main(["--data_dir", str(mnist_slice), "--out", str(figure), "--logdir", str(logdir)])
    verdicts = {f"{activation}, {start}": "; ".join(words) for (activation, start), (_, _, words) in results.items()}
    return verdicts, figure, logdir


@pytest.mark.parametrize("run,expected,not_expected", [
    ("relu, too small", "vanishes", "trains ("),
    ("tanh, too small", "vanishes", "trains ("),
    ("tanh, too large", "saturates", "trains ("),
    ("relu, too large", "explodes", "trains ("),
    ("relu, He", "trains (", "vanishes"),
    ("tanh, Xavier", "trains (", "saturates"),
    ("relu, Xavier", "vanishes", "explodes"),
])
def test_the_verdicts_hold_on_the_shipped_slice(example, run, expected, not_expected):
    verdict = example[0][run]
    assert expected in verdict and not_expected not in verdict, f"{run}: {verdict}"


def test_the_docs_show_the_verdicts_the_run_prints(example):
    shown = doc_text_after("initialisation.md", "The verdicts it prints (thresholds in `lecture/initialisation.py`):")
    printed = [f"{run}: {verdict}" for run, verdict in example[0].items()]

    # NOTE: the words and their order; the numbers move in their last digits with the CPU's rounding of the products
    def words(lines):
        return [re.sub(r"[-+]?\d[\d.e+-]*|inf", "#", line) for line in lines]
    assert words(shown.splitlines()) == words(printed)


def test_the_run_prints_one_verdict_line_per_start(mnist_slice, tmp_path, capsys, monkeypatch):
    fake = {(activation, start): ({}, [2.3], [f"verdict of {start}"]) for activation in initialisation.ACTIVATIONS
            for start in initialisation.STARTS}
    monkeypatch.setattr(initialisation, "run", lambda data_dir, epochs: fake)
    monkeypatch.setattr(initialisation, "statistics_figure", lambda results: Figure())
    initialisation.main(["--out", str(tmp_path / "f.png"), "--logdir", ""])
    lines = re.findall(r"^(tanh|relu), (.+): verdict of (.+)$", capsys.readouterr().out, re.MULTILINE)
    assert len(lines) == 8 and all(start == again for _, start, again in lines)


def test_the_verdicts_are_computed_from_the_numbers():
    healthy = {"std": [0.8] * 9, "grad_std": [0.01] * 10, "saturated": [0.0] * 9}
    assert initialisation.verdict(healthy, [1.5, 0.4]) == ["trains (loss 1.50 -> 0.40 in 2 epochs)"]
    shrinking = {**healthy, "std": [0.5**layer for layer in range(9)]}
    assert initialisation.verdict(shrinking, [2.3, 2.3])[0].startswith("vanishes (activation std ×4e-03")
    saturated = {**healthy, "saturated": [0.6] + [0.0] * 8}
    assert "saturates (60% of a layer's units)" in initialisation.verdict(saturated, [2.3, 1.5])
    assert initialisation.verdict(healthy, [math.inf])[-1].startswith("does not train")


def test_the_figure_is_a_small_png_and_in_tensorboard(example):
    _, figure, logdir = example
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size < 150_000
    run = next(logdir.rglob("events.out.tfevents.*")).parent
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert events.Tags()["images"] == ["initialisation/statistics"]
    assert "initialisation/loss/relu, He" in events.Tags()["scalars"]


def test_the_committed_figure_is_small():
    figure = initialisation.ROOT / "docs" / "figures" / "initialisation.png"
    assert figure.is_file() and figure.stat().st_size < 150_000


# the statistics callback of ordinary training runs


def test_layer_statistics_log_each_layer_on_every_nth_step(mnist_slice, tmp_path):
    logger = EpochlessTensorBoardLogger(str(tmp_path), name="stats", default_hp_metric=False)
    model = {"hidden_sizes": (16, 8), "activation": "tanh"}
    fit(mnist_slice, model, [LayerStatistics(every_n_steps=2), TrainingSteps(cuda_graph=False)], logger=logger,
        max_steps=6, limit_val_batches=0)
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0}).Reload()
    tags = {tag for tag in events.Tags()["scalars"] if tag.startswith("layers/")}
    expected = {f"layers/{stat}/net.{index}" for stat in ("act_mean", "act_std", "saturated") for index in (1, 3)}
    expected |= {f"layers/grad_std/net.{index}.weight" for index in (0, 2, 4)}
    assert tags == expected
    assert [event.step for event in events.Scalars("layers/act_std/net.1")] == [1, 3, 5]  # steps 2, 4, 6
    assert all(0 < event.value < 1 for event in events.Scalars("layers/act_std/net.3"))  # tanh: |A| < 1


def test_layer_statistics_off_registers_no_hook(mnist_slice, monkeypatch):
    registered = []
    original = torch.nn.Module.register_forward_hook
    monkeypatch.setattr(torch.nn.Module, "register_forward_hook",
                        lambda self, *args, **kwargs: registered.append(self) or original(self, *args, **kwargs))
    fit(mnist_slice, {"hidden_sizes": (16,)}, [LayerStatistics()], max_steps=3, limit_val_batches=0)
    assert registered == []
    fit(mnist_slice, {"hidden_sizes": (16,)}, [LayerStatistics(every_n_steps=3)], max_steps=3, limit_val_batches=0)
    assert len(registered) == 1  # the one ReLU, on step 3 only


def test_train_py_takes_the_init_choice_and_the_statistics_switch(mnist_slice, tmp_path):
    cli = cli_main(cli_args(mnist_slice, tmp_path, "--model.init", "kaiming_normal", "--layer_stats.every_n_steps",
                            "10", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "2"))
    assert cli.model.hparams.init == "kaiming_normal"
    events = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={"scalars": 0}).Reload()
    assert "layers/act_std/net.1" in events.Tags()["scalars"]
    assert "layers/grad_std/net.0.weight" in events.Tags()["scalars"]
