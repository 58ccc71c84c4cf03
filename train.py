"""Train an MLP of handwritten-backprop layers on MNIST with PyTorch Lightning; log to TensorBoard.

    python train.py                                       # default config (configs/mnist.yaml): fit, then test
    python train.py --config configs/mnist_sigmoid_mse.yaml
    python train.py --data.data_dir ../shared/datasets/mnist --trainer.max_epochs 3 --model.backend native
    python train.py --print_config                        # the resolved config
    python train.py fit|validate|test ...                 # Lightning's subcommands (test: --ckpt_path PATH)
    tensorboard --logdir runs

Every run writes runs/<name>/version_<n>/: TensorBoard events, the resolved config.yaml and checkpoints
(checkpoints/last.ckpt every 100 steps and at each epoch end, best-epochNN.ckpt by validation accuracy).
Resume an interrupted run (Ctrl-C, a crash, a kill) with the exact same result as an uninterrupted one:

    python train.py --config runs/<name>/version_<n>/config.yaml --ckpt_path runs/<name>/version_<n>/checkpoints/last.ckpt
Without --config, configs/mnist.yaml is used. Any LightningModule / LightningDataModule can be named in a config
(`model: class_path: ...`), which is how the lecture's examples (configs/xor.yaml, configs/circle.yaml) run.
"""
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.model_helpers import is_overridden

from models.callbacks import GradientStatistics, NativeGradientCheck, TestReport
from models.reliability import GracefulInterrupt, NonFiniteLossError, RandomState, StopOnNonFinite

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "mnist.yaml"
# NOTE: the module steps the optimizer itself (manual optimization), so a step-wise checkpoint holds the state after
# step N with global_step N and the loader past batch N: exactly what a resume needs (tested bit for bit).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class ManualBPCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        # best-epochNN.ckpt by validation accuracy (for testing) and last.ckpt after each validation ...
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/acc", "checkpoint.mode": "max", "checkpoint.save_last": True,
                             "checkpoint.filename": "best-epoch{epoch:02d}", "checkpoint.auto_insert_metric_name": False,
                             "checkpoint.enable_version_counter": False})
        # ... and last.ckpt every N training steps too, so an interrupted run loses at most N steps
        parser.add_lightning_class_args(ModelCheckpoint, "resume_checkpoint")
        parser.set_defaults({"resume_checkpoint.filename": "last", "resume_checkpoint.every_n_train_steps": 100,
                             "resume_checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(RandomState, "random_state")
        parser.add_lightning_class_args(GracefulInterrupt, "graceful_interrupt")
        parser.add_lightning_class_args(StopOnNonFinite, "stop_on_non_finite")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(NativeGradientCheck, "grad_check")
        parser.add_lightning_class_args(GradientStatistics, "grad_stats")
        parser.add_lightning_class_args(TestReport, "test_report")

    def instantiate_classes(self):
        try:
            super().instantiate_classes()
        except ValueError as error:  # an impossible value (negative lr, hidden size 0, ...): say which, then stop
            self.parser.error(str(error))


def cli_main(args=None):
    args = list(sys.argv[1:] if args is None else args)
    fit_then_test = not args or args[0] not in (*SUBCOMMANDS, "-h", "--help")
    if fit_then_test:
        args = ["fit", *args]
    if args[0] in SUBCOMMANDS and not any(arg == "--config" or arg.startswith("--config=") for arg in args):
        args[1:1] = ["--config", str(DEFAULT_CONFIG)]
    try:
        cli = ManualBPCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                          subclass_mode_data=True, args=args)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if fit_then_test and not cli.trainer.interrupted and is_overridden("test_step", cli.model):
        best = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best or None)
        if results and cli.trainer.is_global_zero:
            print(f"test accuracy: {100 * results[0]['test/acc']:.2f}%  ({best or 'final weights'})")
    return cli


if __name__ == "__main__":
    cli_main()
