"""What train.py checks before a fit resumes from --ckpt_path: the file (present, readable), and that the model, data
and schedule settings are the ones it was trained with. Each problem is one ResumeError line (train.py: exit 2), and a
second line with the command to use where there is one.
"""
import os
import re
import shlex
from pathlib import Path

from lightning_fabric.plugins.environments import SLURMEnvironment

from models.checkpoints import DamagedCheckpointError, newest_good_checkpoint, read_checkpoint

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"
RESUME_COMMAND = "python train.py --config {config} --ckpt_path {checkpoint}"  # GracefulInterrupt's, in the config
# arguments that say where the data are or how fast a step runs, not what is learned: free to change when a run
# resumes, and left out of TensorBoard's HParams tab (train.py passes them to TestReport)
SETTINGS = ("data_dir", "download", "eval_batch_size")
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")  # --ckpt_path values that name no file


class ResumeError(ValueError):
    """--ckpt_path cannot resume this run: missing, damaged, or trained with other settings (one line, exit 2)."""


def resume_checkpoint(path):
    """The checkpoint at path, or a ResumeError naming what is wrong and the newest good checkpoint beside it."""
    path = Path(path)
    try:
        return read_checkpoint(path)
    except (FileNotFoundError, DamagedCheckpointError) as error:
        problem = f"no checkpoint at {path}" if isinstance(error, FileNotFoundError) else str(error)
        newest = newest_good_checkpoint(path.parent, skip=path) if path.parent.is_dir() else None
        if not path.parent.parent.is_dir():  # not even the run folder (a run killed early has no checkpoints/ yet)
            missing = next(folder for folder in reversed(path.parents) if not folder.is_dir())
            advice = (f"there is no folder {missing}: check the path (a run's checkpoints are in "
                      "<save_dir>/<name>/version_<n>/checkpoints/)")
        elif newest is None:
            advice = (f"{path.parent} holds no good checkpoint (the run stopped before writing one?): "
                      "start it again without --ckpt_path")
        else:
            advice = (f"the newest good checkpoint in {path.parent} is {newest[0].name} (step {newest[1]}): "
                      f"resume with --ckpt_path {shlex.quote(str(newest[0]))}")
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
            if name not in SETTINGS and name in saved and plain(saved[name]) != plain(value):
                changes.append(f"{key}.{name} {plain(saved[name])} -> {plain(value)}")
    command = own_config_command(path)
    if changes:
        advice = (f"resume with the run's own config.yaml (or start a new run without --ckpt_path):\n  {command}"
                  if command else "resume with the run's own config.yaml, or start a new run without --ckpt_path")
        raise ResumeError(f"{path} was trained with other settings than given now: {', '.join(changes)}; {advice}")
    planned = checkpoint.get("schedule_limits")  # written by a model whose learning-rate schedule spans the run
    if planned:
        limits = trainer_limits(config.trainer)
        changed = [f"trainer.{key} {planned[key]} -> {limits[key]}" for key in ("max_epochs", "max_steps")
                   if planned[key] != limits[key]]
        if changed:
            advice = (f"resume with the run's own limits (or start a new run without --ckpt_path):\n  {command}"
                      if command else "resume with the run's own limits, or start a new run without --ckpt_path")
            raise ResumeError(f"{path}: its {planned['lr_schedule']} learning-rate schedule spans the run's planned "
                              f"length, which changed ({', '.join(changed)}): resuming would step past its end or stop "
                              f"short of it; {advice}")


def own_config_command(path):
    """The command that resumes from the checkpoint at path with its run's own config.yaml (<run>/checkpoints/x.ckpt
    beside <run>/config.yaml), the paths as given; None where the checkpoint is not in a run folder."""
    path = Path(path)
    config = path.parent.parent / "config.yaml"
    if path.parent.name != "checkpoints" or not config.is_file():
        return None
    return resume_command_for(config, path)


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


def hpc_checkpoint(config, path):
    """The checkpoint Lightning would load by itself for `--ckpt_path hpc`, or under SLURM without a --ckpt_path: the
    hpc_ckpt_N.ckpt of largest N in trainer.default_root_dir. For "hpc" its path (checked like any --ckpt_path); a
    ResumeError when there is none, or when one is found without a --ckpt_path: it may be any run's, and Lightning
    would load it without this project's checks. None (path) when there is nothing to do."""
    folder = Path(os.path.expanduser(config.trainer.get("default_root_dir") or os.getcwd()))
    if path is None and not SLURMEnvironment.detect():
        return None
    found = [(int(re.sub("[^0-9]", "", file.name[len("hpc_ckpt_"):]) or 0), file)
             for file in folder.glob("hpc_ckpt_*.ckpt")] if folder.is_dir() else []
    if path == "hpc":
        if not found:
            raise ResumeError(f"--ckpt_path hpc: no hpc_ckpt_<n>.ckpt in {folder} (trainer.default_root_dir)")
        config.ckpt_path = str(max(found)[1])
        return config.ckpt_path
    if found:
        file = max(found)[1]
        raise ResumeError(f"{file}: under SLURM Lightning would resume from this file unasked (it lies in "
                          f"trainer.default_root_dir) and without this project's checks; to resume from it give "
                          f"--ckpt_path {shlex.quote(str(file))}, else move it out of {folder}")
    return None


def resume_command():
    """RESUME_COMMAND as printed here: with train.py named so that it runs from the working directory (the config
    keeps RESUME_COMMAND itself, and a resume may run elsewhere)."""
    return RESUME_COMMAND.replace("train.py", train_py(), 1)


def resume_command_for(config, checkpoint):
    """resume_command() with a run's config.yaml and checkpoint filled in, each quoted for the shell."""
    return resume_command().format(config=shlex.quote(str(config)), checkpoint=shlex.quote(str(checkpoint)))


def train_py():
    """train.py as a command printed for the user names it: `train.py` in its own folder, else its absolute path (a
    command that works from the working directory it is printed in)."""
    return "train.py" if Path.cwd().resolve() == TRAIN_PY.parent else shlex.quote(str(TRAIN_PY))
