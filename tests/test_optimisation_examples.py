"""The lecture's "is batch gradient descent the best way?" examples: the paths on two surfaces, and five update rules
on the MNIST slice; their verdicts come from the numbers and hold."""
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lecture import optimiser_paths, optimisers_mnist
from tests.helpers import SLICE_DIR, doc_text_after


def test_paths_gradient_descent_zig_zags_across_the_bowl_and_crawls_along_the_valley(tmp_path, capsys):
    paths = optimiser_paths.main(["--out", str(tmp_path / "paths.png")])
    (bowl, bowl_surface), (valley, valley_surface) = optimiser_paths.SURFACES.items()

    def ratio(rule):
        return optimiser_paths.path_ratio(paths[bowl][rule], *(torch.tensor(bowl_surface[i]) for i in (1, 2)))

    def end(rule):
        return (paths[valley][rule][-1] - torch.tensor(valley_surface[2], dtype=torch.float64)).norm()

    assert ratio("gradient descent") > 2  # across the narrow axis and back, every step
    assert all(ratio(rule) < 1.5 for rule in ("Nesterov", "RMSprop", "Adagrad", "Adam"))
    assert all(end(rule) < end("gradient descent") / 50 for rule in ("momentum", "Nesterov", "Adam"))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 6 + 4 + 1  # a verdict per surface and rule, the closest and straightest, the figure
    shown = doc_text_after("optimisation.md", "Its verdicts (the numbers are the run's, deterministic):")
    assert len(shown.splitlines()) == 6 and set(shown.splitlines()) <= set(lines)  # the docs' six lines, as printed
    assert lines[-5:-1] == ["closest on the bowl: RMSprop", "closest on the Rosenbrock: Adam",
                            "straightest path to within 0.01 on the bowl: Adagrad",
                            "straightest path to within 0.01 on the Rosenbrock: Adam"]
    assert 10_000 < (tmp_path / "paths.png").stat().st_size < 150_000


def test_five_rules_on_the_mnist_slice_mini_batches_beat_full_batch_descent(tmp_path, capsys):
    results = optimisers_mnist.main(["--data_dir", str(SLICE_DIR), "--val_size", "500", "--epochs", "2",
                                     "--logdir", str(tmp_path / "runs")])
    full = results["full-batch gradient descent"]
    assert full["updates"] == 2 and all(r["updates"] == 2 * 20 for rule, r in results.items() if r is not full)
    for rule, result in results.items():
        if result is not full:
            assert result["loss"][-1] < full["loss"][-1] / 2 and result["acc"][-1] > full["acc"][-1] + 0.1, rule
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 5 + 2 + 1 and out[-3].startswith("lowest training loss: ")
    run = tmp_path / "runs" / "version_0"  # the run's own folder: its curves and its figure
    assert out[-1] == f"figure: {run / 'optimisers_mnist.png'}; TensorBoard: tensorboard --logdir {tmp_path / 'runs'}"
    for rule in optimisers_mnist.RULES:  # one TensorBoard run per rule, the same two tags
        events = EventAccumulator(str(run / rule.replace(" ", "_")))
        events.Reload()
        assert set(events.Tags()["scalars"]) == {"loss/train", "acc/val"}
        assert [e.step for e in events.Scalars("acc/val")] == [1, 2]
    assert 10_000 < (run / "optimisers_mnist.png").stat().st_size < 150_000


def test_each_run_writes_a_folder_of_its_own(tmp_path, monkeypatch, capsys):
    two = {rule: optimisers_mnist.RULES[rule] for rule in ("full-batch gradient descent", "Adam")}  # a faster run
    monkeypatch.setattr(optimisers_mnist, "RULES", two)
    for _ in range(2):
        optimisers_mnist.main(["--data_dir", str(SLICE_DIR), "--val_size", "500", "--epochs", "1",
                               "--logdir", str(tmp_path / "runs")])
    for run in ("version_0", "version_1"):  # not the second run's curves over the first's
        assert len(list((tmp_path / "runs" / run / "Adam").glob("events.out.tfevents.*"))) == 1
        assert (tmp_path / "runs" / run / "optimisers_mnist.png").is_file()
