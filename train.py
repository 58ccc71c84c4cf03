"""Train an MLP of handwritten-backprop layers on MNIST with PyTorch Lightning; log to TensorBoard.

    python train.py                                       # default config (configs/mnist.yaml): fit, then test
    python train.py --config configs/mnist_sigmoid_mse.yaml
    python train.py --data.data_dir ../shared/datasets/mnist --trainer.max_epochs 3 --model.backend native
    python train.py --print_config                        # the resolved config
    python train.py fit|validate|test ...                 # Lightning's subcommands (test: --ckpt_path PATH)
    tensorboard --logdir runs

Every run writes runs/<name>/version_<n>/: TensorBoard events, the resolved config.yaml and checkpoints
(checkpoints/last.ckpt every 500 steps and with each new best, best-epochNN.ckpt by validation accuracy).
Resume an interrupted run (Ctrl-C, SIGTERM, a crash, a kill) in its own folder, with the exact same result as an
uninterrupted one:

    python train.py --config runs/<name>/version_<n>/config.yaml --ckpt_path runs/<name>/version_<n>/checkpoints/last.ckpt

A --ckpt_path that is missing or damaged, or that was trained with other model or data settings, is refused in one
line before anything is written (with the command that resumes with the run's own config.yaml, where there is one).

configs/mnist.yaml is read first, then any --config on top. Any LightningModule / LightningDataModule can be named
in a config (`model: class_path: ...`), which is how the lecture's examples (configs/xor.yaml, configs/circle.yaml)
run.
"""
import errno
import logging
import os
import shlex
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from pytorch_lightning.callbacks import LearningRateMonitor, ModelSummary, ProgressBar
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException
from pytorch_lightning.utilities.model_helpers import is_overridden

from cli.errors import SUBCOMMANDS, AcceleratorError, check_accelerator, unlogged_monitor, value_error
from cli.parser import HELP, SECTIONS, ConciseParser
from cli.resume import (LIGHTNING_CKPT_NAMES, RESUME_COMMAND, SETTINGS, ResumeError, check_same_settings,
                        hpc_checkpoint, resume_checkpoint, resume_command, resume_command_for, train_py)
from models.callback_group import CallbackGroup
from models.callbacks import GradientStatistics, LayerStatistics, NativeGradientCheck, TestReport
from models.checkpoints import CachedKeyModelCheckpoint, CheckpointWriteError, FollowMovedRunFolder
from models.console import EpochProgressBar, EpochSummary, LayerTable
from models.data import DataSplitError
from models.idx import DataFileError, DataNotFoundError
from models.reliability import GracefulInterrupt, NonFiniteLossError, RandomState, resume_checkpoint_path
from models.run_folder import RunFolderError, lock_run_folder, release_run_folders
from models.training_steps import TrainingSteps

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "mnist.yaml"
# A step-wise checkpoint holds the state after step N with global_step N and the loader past batch N, and a resume
# from it continues at the batch it stopped after: MNISTDataModule's state_dict holds the position in the epoch, so
# Lightning's "dataloader is not resumable" does not apply (tested bit for bit)
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
# Nothing foreign on the console: a deprecation inside Lightning itself (torch 2.14's pytree), and Lightning's advert
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# ... nor, under DDP, Lightning's advice to log the epoch's training sums with sync_dist: TrainingSteps logs them
# summed over the processes already (strategy.reduce)
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(loss|acc)/train'")
# ... nor torch's notice that its autograd thread set up the CUDA context for the first backward's cuBLAS call
warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no current CUDA context")
# ... nor "GPU available: False", "TPU available: False" (where there is a GPU, whether it is used stays), nor the
# advice to trade float32 matmul precision for speed on a GPU: the runs here keep it, so that the live gradient check
# compares the handwritten backward with autograd's to float32's precision (TF32 would make that ~1e-3)
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage()
    and not record.getMessage().startswith(("GPU available: False", "TPU available: False",
                                            "You are using a CUDA device")))
# ... nor "Seed set to 42" before every run and every error: the seed is in the run's config.yaml
logging.getLogger("lightning_fabric.utilities.seed").addFilter(lambda record: "Seed set to" not in record.getMessage())
# what only TensorBoard shows, or what would be written into a run folder: left out of a run without a logger
NEEDS_A_LOGGER = (LearningRateMonitor, GradientStatistics, LayerStatistics, NativeGradientCheck, TestReport,
                  SaveConfigCallback)
# The two checkpoints' defaults (--checkpoint.*, --resume_checkpoint.*): best-epochNN.ckpt by validation accuracy (for
# testing), and last.ckpt beside each new best ... and every N training steps too, so a run killed outright (kill -9,
# power lost) loses at most N steps, and at the end of training, so that it holds the final weights; Ctrl-C and SIGTERM
# save at the batch they stop at. NOTE: 500, about an epoch of the default run: a write takes 10–13 ms on the CPU and
# 32 ms on an H100 (docs/benchmarks.md), the time of several steps
CHECKPOINTS = {
    "checkpoint": {"monitor": "acc/val", "mode": "max", "save_last": True, "filename": "best-epoch{epoch:02d}",
                   "auto_insert_metric_name": False, "enable_version_counter": False},
    "resume_checkpoint": {"filename": "last", "every_n_train_steps": 500, "enable_version_counter": False,
                          "save_on_train_end": True},
}


class ManualBPCLI(LightningCLI):
    """LightningCLI with this project's callbacks. Without a subcommand (run=False) it fits, then tests.

    A fit from a checkpoint is checked before anything is written (the file, then the model, data and schedule
    settings it was trained with) and continues in the checkpoint's own run folder when it lies in one.
    """

    running = None  # the instance whose classes were made last: cli_main names its folder when a disk is full

    def __init__(self, *args, run=True, **kwargs):
        self.fit_then_test = not run
        self.argv = list(sys.argv[1:] if kwargs.get("args") is None else kwargs["args"])
        self.resumed_logger = None  # the logger's init_args when a fit continues in its checkpoint's run folder
        self.given_save_dir = None  # (the logger's init_args, its save_dir as given) while the logger gets it absolute
        super().__init__(*args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser):
        for section, settings in CHECKPOINTS.items():  # best-epochNN.ckpt and last.ckpt (CHECKPOINTS)
            parser.add_lightning_class_args(CachedKeyModelCheckpoint, section)
            parser.set_defaults({f"{section}.{name}": value for name, value in settings.items()})
        # every checkpoint written beside its final name, fsynced, then renamed onto it: never a torn file
        parser.set_defaults({"trainer.plugins": [{"class_path": "models.checkpoints.AtomicCheckpointIO"}]})
        parser.add_lightning_class_args(RandomState, "random_state")
        parser.add_lightning_class_args(FollowMovedRunFolder, "moved_run_folder")
        parser.add_lightning_class_args(GracefulInterrupt, "graceful_interrupt")
        parser.set_defaults({"graceful_interrupt.resume_command": RESUME_COMMAND})
        # the fast path of every step: CUDA graph replay (--training_steps.cuda_graph false: off), the epoch's loss
        # and accuracy summed on the device, the stop at the first non-finite gradient
        parser.add_lightning_class_args(TrainingSteps, "training_steps")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(NativeGradientCheck, "grad_check")
        parser.add_lightning_class_args(GradientStatistics, "grad_stats")
        parser.add_lightning_class_args(LayerStatistics, "layer_stats")  # --layer_stats.every_n_steps N (0: off)
        parser.add_lightning_class_args(TestReport, "test_report")
        parser.set_defaults({"test_report.not_hyperparameters": list(SETTINGS)})
        parser.add_lightning_class_args(EpochSummary, "epoch_summary")
        if self.fit_then_test:  # the fit subcommand has its own --ckpt_path (Trainer.fit's argument)
            parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                                help="Resume training from this checkpoint (a run's checkpoints/last.ckpt).")
        parser.add_section_helps(SECTIONS)

    def run_config(self):
        """(the config of this run, whether it fits): the subcommand's section, or the whole config without one."""
        subcommand = self.config.get("subcommand")
        return (self.config[subcommand] if subcommand else self.config), subcommand in (None, "fit")

    def parse_arguments(self, parser, args):
        super().parse_arguments(parser, args)
        # NOTE: here, before anything is written, and before LightningCLI's `fit --ckpt_path` silently replaces the
        # model settings given with the checkpoint's
        config, fitting = self.run_config()
        if not fitting:  # NOTE: a checkpoint's bookkeeping of its own folder, which test / validate / predict never use
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
        check_accelerator(config.trainer.get("accelerator"))
        path = config.get("ckpt_path")
        if path == "hpc" or path is None:
            path = hpc_checkpoint(config, path)
        if not fitting and not path:  # NOTE: Lightning would test (validate, predict) the untrained weights, exit 0
            subcommand = self.config.subcommand
            parser.error(f"{subcommand} needs --ckpt_path, the checkpoint to {subcommand} (e.g. a run's "
                         "checkpoints/best-epochNN.ckpt or last.ckpt): without one the weights are untrained")
        if path and path not in LIGHTNING_CKPT_NAMES:
            checkpoint = resume_checkpoint(path)
            if fitting:
                check_same_settings(checkpoint, config, path)

    def before_instantiate_classes(self):
        """A fit from a checkpoint in a run folder (<dir>/<name>/version_N/checkpoints/*.ckpt beside its config.yaml)
        continues in that folder, wherever it lies now (moved or copied since it was written): its TensorBoard curves,
        config and checkpoints stay in one folder, and ModelCheckpoint restores its best-model bookkeeping, so the
        final test uses the same best checkpoint as without a stop. The folder is locked first: a resume started while
        the run still writes in it is refused (models/run_folder.py)."""
        config, fitting = self.run_config()
        path, logger = config.get("ckpt_path"), config.trainer.get("logger")
        args = getattr(logger, "init_args", None)
        if args is not None and args.get("save_dir"):
            # NOTE: the logger gets the absolute folder, so every path printed (the run folder, checkpoints, the resume
            # command) says where it is, wherever train.py ran; the run's config.yaml keeps the save_dir given
            self.given_save_dir = (args, args.save_dir)
            args.save_dir = os.path.abspath(os.path.expanduser(args.save_dir))
        if not fitting or not path or path in LIGHTNING_CKPT_NAMES or args is None or args.get("version") is not None:
            return
        checkpoint = Path(path).resolve()
        run_dir = checkpoint.parents[1]
        if checkpoint.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
            return  # not in a run folder: a new run in save_dir
        if rank_zero_only.rank == 0:  # NOTE: under DDP rank 0 writes the files, and holds the folder
            lock_run_folder(run_dir)
        if args.get("save_dir") is None or run_dir.parent != (Path(args.save_dir) / str(args.name)).resolve():
            args.save_dir, args.name = str(run_dir.parents[1]), run_dir.parent.name  # moved: where it is now
            self.given_save_dir = None  # the run's config.yaml says where it is now
        args.version = run_dir.name  # a string version is the folder name itself
        self.resumed_logger = args
        self.save_config_kwargs = {**self.save_config_kwargs, "overwrite": True}  # that run's config.yaml
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def after_instantiate_classes(self):
        ManualBPCLI.running = self
        if self.given_save_dir is not None:
            args, save_dir = self.given_save_dir
            args.save_dir = save_dir
        for callback in self.trainer.callbacks:
            if isinstance(callback, GracefulInterrupt) and callback.resume_command == RESUME_COMMAND:
                callback.resume_command = resume_command()
        if self.trainer.logger is None:
            self.without_logger()
        if self.resumed_logger is not None:
            # NOTE: the run's config.yaml keeps saying how the run starts (no version, no ckpt_path), so `--config`
            # with it alone still starts a new run; the objects were made from the values above
            self.resumed_logger.version = None
            self.run_config()[0].ckpt_path = None
        # NOTE: one callback to Lightning, so each step pays Lightning's hook calls once, not once per callback
        self.trainer.callbacks = CallbackGroup.around(self.trainer.callbacks)

    def without_logger(self):
        """--trainer.logger false: no TensorBoard and no run folder. Left out: the callbacks that only feed TensorBoard
        (LearningRateMonitor would refuse to start without a logger), and the config.yaml that would be written into
        the working directory, where the next run would refuse to overwrite it. Checkpoints go where Lightning puts
        them (trainer.default_root_dir/checkpoints); a stop prints this same command line with --ckpt_path."""
        self.trainer.callbacks = [callback for callback in self.trainer.callbacks
                                  if not isinstance(callback, NEEDS_A_LOGGER)]
        for callback in self.trainer.callbacks:
            if isinstance(callback, GracefulInterrupt):
                callback.resume_command = rerun_command(self.argv)

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with what is decided when it runs, not written into the run's config.yaml (which a resume
        reads, perhaps elsewhere): where trainer.enable_progress_bar is null (the default), the progress bar on a
        terminal, and in a pipe or a log file only EpochSummary's lines; the progress bar's and model summary's classes;
        under SLURM, its cluster environment without Lightning's auto-requeue."""
        trainer = (self.config_init[self.subcommand] if self.subcommand else self.config_init).trainer
        if trainer.get("enable_progress_bar") is None:
            kwargs.setdefault("enable_progress_bar", sys.stdout.isatty())
        callbacks = trainer.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        # the bar as the epoch lines count: "epoch 1/12", and the model summary without FLOPs (unless a config names
        # one of its own)
        if kwargs.get("enable_progress_bar", trainer.get("enable_progress_bar")) is not False and not any(
                isinstance(callback, ProgressBar) for callback in callbacks):
            callbacks = callbacks + [EpochProgressBar()]
        if trainer.get("enable_model_summary") is not False and not any(
                isinstance(callback, ModelSummary) for callback in callbacks):
            callbacks = callbacks + [LayerTable()]
            kwargs["enable_model_summary"] = False  # NOTE: Lightning's own default summary, which LayerTable replaces
        kwargs["callbacks"] = callbacks
        plugins = trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if SLURMEnvironment.detect() and not any(isinstance(plugin, ClusterEnvironment) for plugin in plugins):
            # NOTE: SIGTERM is this project's (GracefulInterrupt, then --ckpt_path); Lightning's requeue on SIGUSR1
            # would write hpc_ckpt_N.ckpt files that a later run loads unchecked
            kwargs["plugins"] = plugins + [SLURMEnvironment(auto_requeue=False)]
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self):
        try:
            super().instantiate_classes()
        except ValueError as error:  # an impossible value (negative lr, hidden size 0, ...): say which, then stop
            self.parser.error(value_error(error, self.run_config()[0]))
        except MisconfigurationException as error:  # Lightning's: a Trainer or callback setting it cannot use
            self.parser.error(value_error(error, self.run_config()[0]))

    def fit_and_test(self):
        """Fit, then (unless interrupted) test the best checkpoint by validation accuracy."""
        self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config_init.get("ckpt_path"))
        if self.trainer.interrupted or not is_overridden("test_step", self.model):
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        # NOTE: not Lightning's table of the test metrics beside the line below (0.7680000066757202 beside 76.80%)
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        if results and self.trainer.is_global_zero:
            print(f"test accuracy: {100 * results[0]['test/acc']:.2f}%  ({best or 'final weights'})")


def rerun_command(argv):
    """The command line argv again, resuming from "{checkpoint}" (a GracefulInterrupt resume_command)."""
    kept, skip = [], False
    for arg in argv:
        if not skip and arg != "--ckpt_path" and not arg.startswith("--ckpt_path="):
            kept.append(arg)
        skip = arg == "--ckpt_path"
    command = " ".join(["python", train_py(), shlex.join(kept)] if kept else ["python", train_py()])
    command = command.replace("{", "{{").replace("}", "}}")
    return command + " --ckpt_path {checkpoint}"


def no_space_message(error, trainer):
    """A full disk outside the checkpoints (TensorBoard's events, ...): what failed, and how to resume from the last
    checkpoint written."""
    logger = trainer.logger if trainer is not None else None  # NOTE: not trainer.log_dir, a collective under DDP
    folder = Path(logger.log_dir) if logger is not None and logger.log_dir else None
    what = error.filename or (f"TensorBoard's events in {folder}" if folder else "the run's files")
    last = resume_checkpoint_path(trainer) if trainer is not None else None
    if last is not None and last.is_file() and folder is not None:
        command = resume_command_for(folder / "config.yaml", last)
        advice = f"free some space, then resume from the last checkpoint with:\n  {command}"
    else:
        advice = "free some space, then start the run again (no checkpoint had been written)"
    return f"error: no space left on the device to write {what}; {advice}"


def quiet_writer_threads(hook_args):
    """threading.excepthook: a TensorBoard writer thread's full disk is reported by the main thread (cli_main);
    anything else as usual."""
    if isinstance(hook_args.exc_value, OSError) and hook_args.exc_value.errno in (errno.ENOSPC, errno.EDQUOT):
        return
    threading.__excepthook__(hook_args)


def cli_main(args=None):
    """`args` instead of the command line (tests); a first argument fit|validate|test|predict runs that subcommand."""
    with warnings.catch_warnings():  # NOTE: the warning filters a run adds for itself (parse_arguments) end with it
        return run_cli(args)


def run_cli(args):
    argv = sys.argv[1:] if args is None else args
    threading.excepthook = quiet_writer_threads
    ManualBPCLI.running = None
    subcommand = bool(argv) and argv[0] in SUBCOMMANDS
    # NOTE: allow_abbrev=False: a misspelt --trainer.max_epoch is an error, not a silent prefix of max_epochs, in
    # every parser (before a subcommand too: jsonargparse would let `fit --trainer.max_epoch 3` set max_epochs); the
    # default config is read by the parser that takes the options, a subcommand's when there is one
    top_level = {"allow_abbrev": False, "description": HELP,
                 "usage": "python train.py [fit|validate|test|predict] [--config FILE] [--section.key VALUE ...]"}
    defaults = {**top_level, "default_config_files": [str(DEFAULT_CONFIG)]}
    parser_kwargs = {**top_level, **{name: defaults for name in SUBCOMMANDS}} if subcommand else defaults
    try:
        cli = ManualBPCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                          subclass_mode_data=True, args=args, run=subcommand,
                          parser_class=ConciseParser.for_arguments(argv), parser_kwargs=parser_kwargs)
        if not subcommand:
            cli.fit_and_test()
    except (AcceleratorError, ResumeError, RunFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteLossError, CheckpointWriteError, DataFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except DataNotFoundError as error:
        print(f"error: {error}\n(give the folder with --data.data_dir)", file=sys.stderr)
        sys.exit(1)
    except DataSplitError as error:
        print(f"error: {error}\n(give a smaller one with --data.val_size)", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(no_space_message(error, getattr(ManualBPCLI.running, "trainer", None)), file=sys.stderr)
        sys.exit(1)
    except MisconfigurationException as error:
        line = unlogged_monitor(error)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:  # Lightning's own SIGTERM handling (outside the training steps) exits with status 0
        print("error: stopped by SIGTERM outside the training steps (nothing more was saved)", file=sys.stderr)
        sys.exit(143)
    finally:
        release_run_folders()
    return cli


if __name__ == "__main__":
    cli_main()
