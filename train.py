"""Train an MLP of handwritten-backprop layers on MNIST with PyTorch Lightning; log to TensorBoard.

    python train.py                                       # default config (configs/mnist.yaml): fit, then test
    python train.py --config configs/mnist_sigmoid_mse.yaml
    python train.py --data.data_dir ../shared/datasets/mnist --trainer.max_epochs 3 --model.backend native
    python train.py --print_config                        # the resolved config
    python train.py fit|validate|test ...                 # Lightning's subcommands (test: --ckpt_path PATH)
    tensorboard --logdir runs

Every run writes runs/<name>/version_<n>/: TensorBoard events, the resolved config.yaml and checkpoints
(checkpoints/last.ckpt every 100 steps and with each new best, best-epochNN.ckpt by validation accuracy).
Resume an interrupted run (Ctrl-C, SIGTERM, a crash, a kill) in its own folder, with the exact same result as an
uninterrupted one:

    python train.py --config runs/<name>/version_<n>/config.yaml --ckpt_path runs/<name>/version_<n>/checkpoints/last.ckpt

A --ckpt_path that is missing or damaged, or that was trained with other model or data settings, is refused in one
line before anything is written.

configs/mnist.yaml is read first, then any --config on top. Any LightningModule / LightningDataModule can be named
in a config (`model: class_path: ...`), which is how the lecture's examples (configs/xor.yaml, configs/circle.yaml)
run.
"""
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.model_helpers import is_overridden

from cli_errors import concise
from models.callbacks import GradientStatistics, NativeGradientCheck, TestReport
from models.checkpoints import CheckpointWriteError, DamagedCheckpointError, newest_good_checkpoint, read_checkpoint
from models.console import EpochSummary
from models.idx import DataFileError, DataNotFoundError
from models.reliability import GracefulInterrupt, NonFiniteLossError, RandomState, StopOnNonFinite

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "mnist.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
RESUME_COMMAND = "python train.py --config {config} --ckpt_path {checkpoint}"
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")  # --ckpt_path values that name no file
# settings a resume may change: where the files are and how a step runs, not what is trained
RESUME_MAY_CHANGE = {"data_dir", "download", "cuda_graph"}
# NOTE: the module steps the optimizer itself (manual optimization), so a step-wise checkpoint holds the state after
# step N with global_step N and the loader past batch N: exactly what a resume needs (tested bit for bit).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")
# Nothing foreign on the console: a deprecation inside Lightning itself (torch 2.14's pytree), and Lightning's advert
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())
HELP = """Without a subcommand: fit, then test the best checkpoint (configs/mnist.yaml, then any --config on top).
List a class's arguments: --model.help MNISTClassifier, --data.help MNISTDataModule (or the class_path of another).
Lightning's subcommands: python train.py fit|validate|test|predict --help."""


class ConciseParser(LightningArgumentParser):
    """Errors in one line naming the option (`--help` has the usage), exit status 2."""

    def error(self, message, ex=None):
        if not self.exit_on_error:
            return super().error(message, ex)
        sys.stderr.write(f"error: {concise(message)}\n(python train.py --help lists the options)\n")
        sys.exit(2)


class ResumeError(ValueError):
    """--ckpt_path cannot resume this run: missing, damaged, or trained with other settings (one line, exit 2)."""


class ManualBPCLI(LightningCLI):
    """LightningCLI with this project's callbacks. Without a subcommand (run=False) it fits, then tests.

    A fit from a checkpoint is checked before anything is written (the file, then the model, data and schedule
    settings it was trained with) and continues in the checkpoint's own run folder when it lies in one.
    """

    def __init__(self, *args, run=True, **kwargs):
        self.fit_then_test = not run
        self.resumed_logger = None  # the logger's init_args when a fit continues in its checkpoint's run folder
        super().__init__(*args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser):
        # best-epochNN.ckpt by validation accuracy (for testing) and last.ckpt after each validation ...
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "acc/val", "checkpoint.mode": "max", "checkpoint.save_last": True,
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
        parser.add_lightning_class_args(EpochSummary, "epoch_summary")
        # the progress bar on a terminal; in a pipe or a log file only EpochSummary's lines
        parser.set_defaults({"trainer.enable_progress_bar": sys.stdout.isatty()})
        if self.fit_then_test:  # the fit subcommand has its own --ckpt_path (Trainer.fit's argument)
            parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                                help="Resume training from this checkpoint (a run's checkpoints/last.ckpt).")

    def run_config(self):
        """(the config of this run, whether it fits): the subcommand's section, or the whole config without one."""
        subcommand = self.config.get("subcommand")
        return (self.config[subcommand] if subcommand else self.config), subcommand in (None, "fit")

    def parse_arguments(self, parser, args):
        super().parse_arguments(parser, args)
        # NOTE: here, before anything is written, and before LightningCLI's `fit --ckpt_path` silently replaces the
        # model settings given with the checkpoint's
        config, fitting = self.run_config()
        path = config.get("ckpt_path")
        if path and path not in LIGHTNING_CKPT_NAMES:
            checkpoint = resume_checkpoint(path)
            if fitting:
                check_same_settings(checkpoint, config, path)

    def before_instantiate_classes(self):
        """A fit from <save_dir>/<name>/version_N/checkpoints/*.ckpt continues in version_N: its TensorBoard curves,
        config and checkpoints stay in one folder, and ModelCheckpoint restores its best-model bookkeeping (which
        Lightning does only in the same folder), so the final test uses the same best checkpoint as without a stop."""
        config, fitting = self.run_config()
        path, logger = config.get("ckpt_path"), config.trainer.get("logger")
        args = getattr(logger, "init_args", None)
        if not fitting or not path or path in LIGHTNING_CKPT_NAMES or args is None or args.get("version") is not None:
            return
        run_dir = Path(path).resolve().parents[1]
        if args.get("save_dir") is None or run_dir.parent != (Path(args.save_dir) / str(args.name)).resolve():
            return
        args.version = run_dir.name  # a string version is the folder name itself
        self.resumed_logger = args
        self.save_config_kwargs = {**self.save_config_kwargs, "overwrite": True}  # that run's config.yaml
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def after_instantiate_classes(self):
        if self.resumed_logger is not None:
            # NOTE: the run's config.yaml keeps saying how the run starts (no version, no ckpt_path), so `--config`
            # with it alone still starts a new run; the objects were made from the values above
            self.resumed_logger.version = None
            self.run_config()[0].ckpt_path = None

    def instantiate_classes(self):
        try:
            super().instantiate_classes()
        except ValueError as error:  # an impossible value (negative lr, hidden size 0, ...): say which, then stop
            self.parser.error(str(error))

    def fit_and_test(self):
        """Fit, then (unless interrupted) test the best checkpoint by validation accuracy."""
        self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config_init.get("ckpt_path"))
        if self.trainer.interrupted or not is_overridden("test_step", self.model):
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        if results and self.trainer.is_global_zero:
            print(f"test accuracy: {100 * results[0]['test/acc']:.2f}%  ({best or 'final weights'})")


def resume_checkpoint(path):
    """The checkpoint at path, or a ResumeError naming what is wrong and the newest good checkpoint beside it."""
    path = Path(path)
    try:
        return read_checkpoint(path)
    except (FileNotFoundError, DamagedCheckpointError) as error:
        problem = f"no checkpoint at {path}" if isinstance(error, FileNotFoundError) else str(error)
        newest = newest_good_checkpoint(path.parent, skip=path) if path.parent.is_dir() else None
        if newest is None:
            advice = (f"{path.parent} holds no good checkpoint (the run stopped before writing one?): "
                      "start it again without --ckpt_path")
        else:
            advice = (f"the newest good checkpoint in {path.parent} is {newest[0].name} (step {newest[1]}): "
                      f"resume with --ckpt_path {newest[0]}")
        raise ResumeError(f"{problem}; {advice}") from None


def check_same_settings(checkpoint, config, path):
    """A ResumeError naming every model / data setting that differs from the checkpoint's, and a schedule that
    would not fit the trainer's limits; resuming with them would silently train something else."""
    changes = []
    for key, saved_key in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters")):
        saved, now = checkpoint.get(saved_key), config.get(key)
        if not saved or now is None or now.get("init_args") is None:
            continue
        if saved.get("_class_path", now.class_path) != now.class_path:
            changes.append(f"{key}.class_path {saved['_class_path']} -> {now.class_path}")
        for name, value in vars(now.init_args).items():
            if name not in RESUME_MAY_CHANGE and name in saved and plain(saved[name]) != plain(value):
                changes.append(f"{key}.{name} {plain(saved[name])} -> {plain(value)}")
    if changes:
        raise ResumeError(f"{path} was trained with other settings than given now: {', '.join(changes)}; resume "
                          "with the run's own config.yaml, or start a new run without --ckpt_path")
    planned = checkpoint.get("schedule_limits")  # written by a model whose learning-rate schedule spans the run
    if planned:
        limits = trainer_limits(config.trainer)
        changed = [f"trainer.{key} {planned[key]} -> {limits[key]}" for key in ("max_epochs", "max_steps")
                   if planned[key] != limits[key]]
        if changed:
            raise ResumeError(f"{path}: its {planned['lr_schedule']} learning-rate schedule spans the run's planned "
                              f"length, which changed ({', '.join(changed)}): resuming would step past its end or stop "
                              "short of it; resume with the run's own limits, or start a new run without --ckpt_path")


def trainer_limits(trainer_config):
    """max_epochs and max_steps as the Trainer resolves them (max_epochs 1000 when neither is given)."""
    max_steps = trainer_config.get("max_steps")
    max_steps = -1 if max_steps is None else max_steps
    max_epochs = trainer_config.get("max_epochs")
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 and trainer_config.get("max_time") is None else -1
    return {"max_epochs": max_epochs, "max_steps": max_steps}


def plain(value):
    """Tuples as lists (YAML and checkpoints hold lists), so that equal settings compare equal."""
    return [plain(item) for item in value] if isinstance(value, (list, tuple)) else value


def cli_main(args=None):
    """`args` instead of the command line (tests); a first argument fit|validate|test|predict runs that subcommand."""
    argv = sys.argv[1:] if args is None else args
    subcommand = bool(argv) and argv[0] in SUBCOMMANDS
    # NOTE: allow_abbrev=False: a misspelt --trainer.max_epoch is an error, not a silent prefix of max_epochs
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)], "allow_abbrev": False, "description": HELP,
                "usage": "python train.py [fit|validate|test|predict] [--config FILE] [--section.key VALUE ...]"}
    try:
        cli = ManualBPCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                          subclass_mode_data=True, args=args, run=subcommand, parser_class=ConciseParser,
                          parser_kwargs={name: defaults for name in SUBCOMMANDS} if subcommand else defaults)
        if not subcommand:
            cli.fit_and_test()
    except ResumeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteLossError, CheckpointWriteError, DataFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except DataNotFoundError as error:
        print(f"error: {error}\n(give the folder with --data.data_dir)", file=sys.stderr)
        sys.exit(1)
    except SIGTERMException:  # Lightning's own SIGTERM handling (outside the training steps) exits with status 0
        print("error: stopped by SIGTERM outside the training steps (nothing more was saved)", file=sys.stderr)
        sys.exit(143)
    return cli


if __name__ == "__main__":
    cli_main()
