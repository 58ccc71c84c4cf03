"""train.py: the default config, overrides, errors before training, and a short run read back from TensorBoard."""
import subprocess
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import ROOT, cli_args
from train import cli_main



def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_no_arguments_resolve_the_default_config(capsys):
    code, out, _ = run_cli(["--print_config"], capsys)
    config = yaml.safe_load(out)
    assert code == 0
    assert config["model"]["class_path"] == "models.classifier.MNISTClassifier"
    assert config["model"]["init_args"]["backend"] == "manual" and config["model"]["init_args"]["hidden_sizes"] == [800]
    assert config["trainer"]["logger"]["class_path"].endswith("TensorBoardLogger")
    assert config["checkpoint"]["monitor"] == "acc/val" and config["checkpoint"]["save_last"] is True
    assert config["resume_checkpoint"]["filename"] == "last" and config["resume_checkpoint"]["monitor"] is None


def test_dotted_overrides_and_another_config(capsys):
    code, out, _ = run_cli(["--config", "configs/mnist_sigmoid_mse.yaml", "--print_config", "--model.backend",
                            "native", "--trainer.max_epochs", "3"], capsys)
    config = yaml.safe_load(out)
    assert code == 0
    model = config["model"]["init_args"]
    assert model["backend"] == "native" and config["trainer"]["max_epochs"] == 3
    assert model["activation"] == "sigmoid" and model["loss"] == "mse"
    assert config["data"]["init_args"]["max_shift"] == 0  # a --config overrides configs/mnist.yaml, read first


@pytest.mark.parametrize("config", ["mnist_long", "mnist_native", "mnist_sigmoid_mse", "mnist_batchnorm"])
def test_a_data_folder_given_before_a_config_is_kept(capsys, config):
    # a config states a run, not where the user keeps the digits: --data.data_dir before --config survives it
    code, out, _ = run_cli(["--data.data_dir", "elsewhere/mnist", "--config", f"configs/{config}.yaml",
                            "--print_config"], capsys)
    assert code == 0 and yaml.safe_load(out)["data"]["init_args"]["data_dir"] == "elsewhere/mnist"


@pytest.mark.parametrize("subcommand", [[], ["fit"]], ids=["fit-then-test", "fit"])
def test_train_py_reads_the_default_config_through_the_cli_without_warnings(subcommand):
    done = subprocess.run([sys.executable, "train.py", *subcommand, "--print_config"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # e.g. LightningCLI's "args parameter is intended ..."
    config = yaml.safe_load(done.stdout)
    assert config["model"]["init_args"]["hidden_sizes"] == [800] and config["trainer"]["max_epochs"] == 12


@pytest.mark.parametrize("args,message", [
    (["--model.lr", "-0.1"], "--model.lr must be > 0, got -0.1"),
    (["--model.hidden_sizes", "[800, 0]"],
     "--model.hidden_sizes must be a non-empty list of positive integers, got [800, 0]"),
    (["--model.activation", "softplus"], "--model.activation must be one of relu, sigmoid, tanh, got softplus"),
    (["--model.no_such_key", "1"], "--model.no_such_key is not an option of MNISTClassifier (list them: python "
                                   "train.py --model.help MNISTClassifier)"),
    (["--data.batch_size", "0"], "--data.batch_size must be >= 1, got 0"),
    # grad_check has an every_n_steps too: the option named is the one given that value
    (["--layer_stats.every_n_steps", "-1"], "--layer_stats.every_n_steps must be >= 0 (0: off), got -1"),
    (["--grad_check.every_n_steps", "-2"], "--grad_check.every_n_steps must be >= 0 (0: off), got -2"),
    # Lightning's own message, named as the option
    (["--trainer.max_epochs", "-5"], "--trainer.max_epochs must be a non-negative integer or -1. You passed in -5."),
])
def test_invalid_config_fails_before_training_with_a_clear_message(args, message, capsys, tmp_path):
    code, out, err = run_cli(["fit", *args, "--data.data_dir", str(tmp_path / "never_read"),
                              "--trainer.logger", "false"], capsys)
    assert code == 2
    assert err.splitlines() == [f"error: {message}", "(python train.py --help lists the options)"], err
    assert out == ""


def hparams_of(run_dir):
    """The hyperparameter names and metric tags that TensorBoard's HParams tab shows for run_dir."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run_dir))
    multiplexer.Reload()
    content = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    experiment = next(metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
                      for tags in content.values() if metadata.EXPERIMENT_TAG in tags)
    return {"hparams": [info.name for info in experiment.hparam_infos],
            "metrics": [info.name.tag for info in experiment.metric_infos]}


def test_short_run_logs_every_tensorboard_tag(mnist_slice, tmp_path, capsys):
    cli = cli_main(cli_args(mnist_slice, tmp_path, "--trainer.log_every_n_steps", "5",
                            "--grad_check.every_n_steps", "10"))
    run_dir = cli.trainer.logger.log_dir
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0}).Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("loss/train", "acc/train", "loss/val", "acc/val", "test/loss", "test/acc", "steps/loss", "steps/lr",
                "steps/grad_check_max_rel_diff", "steps/grad_norm/net.0.weight", "steps/grad_norm_total"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    assert 0.5 < events.Scalars("test/acc")[-1].value <= 1.0
    assert "epoch" not in scalars  # Lightning's step-wise epoch counter would be the Time Series tab's first card
    assert all(0 <= e.value < 1e-4 for e in events.Scalars("steps/grad_check_max_rel_diff"))
    # 2 epochs of 20 steps: the check on steps 10, 20, 30, 40 (0-based 9, 19, ...), the loss and the norms on every
    # 5th step, each written once, at the step it was computed on
    assert [e.step for e in events.Scalars("steps/grad_check_max_rel_diff")] == [9, 19, 29, 39]
    for tag in ("steps/loss", "steps/grad_norm_total", "steps/lr"):
        assert [e.step for e in events.Scalars(tag)] == list(range(4, 40, 5)), tag
    histograms = set(events.Tags()["histograms"])
    assert {"parameters/net.0.weight", "parameters_grad/net.0.weight", "parameters/net.2.bias"} <= histograms
    assert len(events.Histograms("parameters/net.0.weight")) == 2  # once per epoch
    assert {"test/confusion_matrix", "test/misclassified"} <= set(events.Tags()["images"])
    hparams = hparams_of(run_dir)
    assert {"hidden_sizes", "lr", "activation", "data.batch_size"} <= set(hparams["hparams"])
    assert not [key for key in hparams["hparams"] if key.startswith("_") or "._" in key]  # no CLI internals
    assert hparams["metrics"] == ["test/acc", "test/loss"]  # read from the run's own test scalars, accuracy first
    tags = scalars + sorted(histograms)  # the Time Series tab: groups sorted by name, the curves first
    assert sorted({tag.split("/")[0] for tag in tags})[:2] == ["acc", "loss"]
    assert (tmp_path / "mnist" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert "test accuracy:" in capsys.readouterr().out


def test_log_every_n_steps_0_and_grad_check_every_n_steps_0_write_no_step_curves(mnist_slice, tmp_path, capsys):
    # Lightning's "never" for the step-wise curves, and the live check (on its own interval) off: the epoch curves
    # are all there
    cli = cli_main(cli_args(mnist_slice, tmp_path, "--data.train_subset", "320", "--trainer.max_epochs", "1",
                            "--trainer.log_every_n_steps", "0", "--grad_check.every_n_steps", "0"))
    events = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={"scalars": 0}).Reload()
    assert sorted(events.Tags()["scalars"]) == ["acc/train", "acc/val", "loss/train", "loss/val", "test/acc",
                                                "test/loss"]


def test_the_saved_config_leaves_the_progress_bar_to_the_run_that_reads_it(mnist_slice, tmp_path, capsys):
    # NOTE: null, decided when a run starts (a bar on a terminal only): a value computed here would be pinned into
    # the config.yaml that a resume reads, perhaps through a pipe
    args = cli_args(mnist_slice, tmp_path, "--data.train_subset", "320", "--trainer.max_epochs", "1")
    at = args.index("--trainer.enable_progress_bar")
    cli = cli_main(args[:at] + args[at + 2:])
    config = yaml.safe_load((tmp_path / "mnist" / "version_0" / "config.yaml").read_text())
    assert config["trainer"]["enable_progress_bar"] is None
    assert cli.trainer.progress_bar_callback is None  # this process's stdout is not a terminal
    assert "it/s" not in "".join(capsys.readouterr())


def test_lightning_calls_the_hooks_of_three_callbacks_a_step(mnist_slice, tmp_path):
    # NOTE: Lightning calls six hooks of every callback it holds on every step (models/callback_group.py): the model
    # summary and LightningCLI's config writer, which act once, are members of the group, and only the checkpoints,
    # which Lightning looks up by type, stay beside it (the summary's lines: tests/test_console.py)
    cli = cli_main(cli_args(mnist_slice, tmp_path, "--data.train_subset", "320", "--trainer.max_epochs", "1"))
    group, *rest = cli.trainer.callbacks
    assert [type(callback).__name__ for callback in rest] == ["CachedKeyModelCheckpoint"] * 2
    assert {"LayerTable", "SaveConfigCallback"} <= {type(member).__name__ for member in group.callbacks}
    assert (tmp_path / "mnist" / "version_0" / "config.yaml").is_file()  # the config writer's work, done as a member
    assert cli.trainer.checkpoint_callback.best_model_path.endswith("best-epoch00.ckpt")
