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

configs/mnist.yaml is read first, then any --config on top. Any LightningModule / LightningDataModule can be named
in a config (`model: class_path: ...`), which is how the lecture's examples (configs/xor.yaml, configs/circle.yaml)
run.
"""
import sys
import warnings
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.model_helpers import is_overridden

from models.callbacks import GradientStatistics, NativeGradientCheck, TestReport
from models.checkpoints import CheckpointWriteError
from models.reliability import GracefulInterrupt, NonFiniteLossError, RandomState, StopOnNonFinite

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "mnist.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
RESUME_COMMAND = "python train.py --config {config} --ckpt_path {checkpoint}"
# NOTE: the module steps the optimizer itself (manual optimization), so a step-wise checkpoint holds the state after
# step N with global_step N and the loader past batch N: exactly what a resume needs (tested bit for bit).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


class ManualBPCLI(LightningCLI):
    """LightningCLI with this project's callbacks. Without a subcommand (run=False) it fits, then tests."""

    def __init__(self, *args, run=True, **kwargs):
        self.fit_then_test = not run
        super().__init__(*args, run=run, **kwargs)

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
        # every checkpoint written beside its final name, fsynced, then renamed onto it: never a torn file
        parser.set_defaults({"trainer.plugins": [{"class_path": "models.checkpoints.AtomicCheckpointIO"}]})
        parser.add_lightning_class_args(RandomState, "random_state")
        parser.add_lightning_class_args(GracefulInterrupt, "graceful_interrupt")
        parser.set_defaults({"graceful_interrupt.resume_command": RESUME_COMMAND})
        parser.add_lightning_class_args(StopOnNonFinite, "stop_on_non_finite")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(NativeGradientCheck, "grad_check")
        parser.add_lightning_class_args(GradientStatistics, "grad_stats")
        parser.add_lightning_class_args(TestReport, "test_report")
        if self.fit_then_test:  # the fit subcommand has its own --ckpt_path (Trainer.fit's argument)
            parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                                help="Resume training from this checkpoint (a run's checkpoints/last.ckpt).")

    def instantiate_classes(self):
        try:
            super().instantiate_classes()
        except ValueError as error:  # an impossible value (negative lr, hidden size 0, ...): say which, then stop
            self.parser.error(str(error))

    def fit_and_test(self):
        """Fit, then (unless interrupted) test the best checkpoint by validation accuracy."""
        self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config.get("ckpt_path"))
        if self.trainer.interrupted or not is_overridden("test_step", self.model):
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        if results and self.trainer.is_global_zero:
            print(f"test accuracy: {100 * results[0]['test/acc']:.2f}%  ({best or 'final weights'})")


def cli_main(args=None):
    """`args` instead of the command line (tests); a first argument fit|validate|test|predict runs that subcommand."""
    argv = sys.argv[1:] if args is None else args
    subcommand = bool(argv) and argv[0] in SUBCOMMANDS
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
    try:
        cli = ManualBPCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                          subclass_mode_data=True, args=args, run=subcommand,
                          parser_kwargs={name: defaults for name in SUBCOMMANDS} if subcommand else defaults)
        if not subcommand:
            cli.fit_and_test()
    except (NonFiniteLossError, CheckpointWriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    return cli


if __name__ == "__main__":
    cli_main()
