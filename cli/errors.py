"""One-line command-line errors for train.py: what is wrong with which option, and what would be right.

jsonargparse reports a bad value inside a subclass-mode model as a nested union error of ten or more lines after
ninety lines of usage; `concise` turns the common cases into one line (`--help` still has the usage), and
`value_error` names the option of a value that a class refused when it was made (a negative lr, ...).
"""
import difflib
import importlib
import inspect
import re

from jsonargparse import Namespace
from pytorch_lightning.accelerators import CUDAAccelerator, MPSAccelerator

from cli.resume import plain

GPU_ACCELERATORS = ("gpu", "cuda", "mps")


class AcceleratorError(ValueError):
    """The Trainer's accelerator names a device this machine does not have (one line, train.py: exit 2)."""


def check_accelerator(accelerator):
    """An AcceleratorError when `accelerator` (trainer.accelerator, a name) asks for a GPU and there is none, before
    Lightning's thirty-line traceback from inside the Trainer."""
    if not isinstance(accelerator, str) or accelerator.lower() not in GPU_ACCELERATORS:
        return
    available = {"cuda": CUDAAccelerator.is_available(), "mps": MPSAccelerator.is_available()}
    if available.get(accelerator.lower(), any(available.values())):
        return
    kind = "CUDA GPU" if accelerator.lower() == "cuda" else "Apple GPU (MPS)" if accelerator.lower() == "mps" else "GPU"
    raise AcceleratorError(f"--trainer.accelerator {accelerator}: no {kind} is available on this machine; use "
                           "--trainer.accelerator cpu, or auto (a GPU where there is one, else the CPU)")


TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


SUBCOMMANDS = ("fit", "validate", "test", "predict")  # LightningCLI's; train.py without one fits, then tests


def concise(message, options=(), arguments=()):
    """The jsonargparse error `message` as one line naming the option, or the message itself if not recognised.

    options: the parser's option names (`trainer.max_epochs`, `model.lr`, ...), to suggest one for a misspelt name.
    arguments: the command-line arguments, to name the option of a section that was given no value.
    """
    keys = re.findall(r'Parser key "([^"]+)"', message)
    option = "--" + ".".join(keys)
    given = re.search(r"Got value: (.*)|Given value: (.*)", message)
    value = next((group for group in given.groups() if group is not None), "").strip() if given else ""
    if unknown := re.search(r"Option '([\w.-]+)' is not accepted", message):
        owner = re.search(r"class_path '([\w.]*?)(\w+)'", message)
        if not owner:
            return f"{option}.{unknown.group(1)} is not an option"
        # NOTE: an option of this class by another spelling, else one of another section (--model.batch_size is
        # --data.batch_size)
        elsewhere = [name for name in options if not name.startswith(option.removeprefix("--") + ".")]
        suggestion = (did_you_mean(unknown.group(1), parameter_names(owner.group(1) + owner.group(2)), option + ".")
                      or did_you_mean(unknown.group(1), elsewhere, "--"))
        hint = suggestion or f" (list them: python train.py {option}.help {owner.group(2)})"
        return f"{option}.{unknown.group(1)} is not an option of {owner.group(2)}{hint}"
    if unrecognized := re.match(r"unrecognized arguments: (.*)", message):
        tokens = unrecognized.group(1).split()
        names = [token.split("=")[0] for token in tokens if re.match(r"--?[A-Za-z]", token)]
        if not names and tokens[0] == next(iter(arguments), None):  # NOTE: a word where a subcommand goes (fitt)
            return (f"{tokens[0]} is not a subcommand: use {', '.join(SUBCOMMANDS[:-1])} or {SUBCOMMANDS[-1]}, or "
                    "none (fit, then test); options start with --")
        if not names:  # NOTE: a value after an option that takes none, or a word after the subcommand
            return f"{tokens[0]} is neither an option (those start with --) nor the value of one"
        return "; ".join(f"{name} is not an option{did_you_mean(name.lstrip('-'), options, '--')}" for name in names)
    if empty := re.match(r"argument (--\w+): expected one argument", message):
        # NOTE: argparse names the section; the option given without its value is the last of that section
        within = [token for index, token in enumerate(arguments) if token.startswith(empty.group(1) + ".")
                  and (index + 1 == len(arguments) or arguments[index + 1].startswith("--"))]
        return f"{within[-1] if within else empty.group(1)} needs a value"
    if {"bool", "int"} <= set(re.findall(r"Expected a <class '(\w+)'>", message)):
        return f"{option} must be true, false or an integer, got {value}"
    if choices := re.search(r"Expected a typing\.Literal\[(.*?)\]", message):
        allowed = ", ".join(choice.strip(" '\"") for choice in choices.group(1).split(","))
        return f"{option} must be one of {allowed}, got {value}"
    if re.search(r"Expected a <class '(tuple|list)'>", message):
        return f"{option} must be a list such as [{value}], got {value}"
    if expected := re.search(r"Expected a <class '(int|float|bool|str)'>", message):
        return f"{option} must be {TYPE_NAMES[expected.group(1)]}, got {value}"
    return message


def did_you_mean(name, options, prefix):
    """'; did you mean --trainer.max_epochs?' for the options closest to a misspelt name ('' when none is close):
    the whole dotted name first, else its last part (`--max_epochs` -> `--trainer.max_epochs`)."""
    options = sorted(set(options))
    scored = sorted(((difflib.SequenceMatcher(None, name, option).ratio(), option) for option in options),
                    reverse=True)
    if not scored or scored[0][0] < 0.75:
        leaf = name.rsplit(".", 1)[-1]
        scored = sorted(((difflib.SequenceMatcher(None, leaf, option.rsplit(".", 1)[-1]).ratio(), option)
                         for option in options), reverse=True)
    if not scored or scored[0][0] < 0.75:
        longer = [prefix + option for option in options if option.startswith(name)][:3]  # --ckpt: --ckpt_path
        return f"; did you mean {' or '.join(longer)}?" if longer else ""
    best = [prefix + option for score, option in scored if score == scored[0][0]][:3]
    return f"; did you mean {' or '.join(best)}?"


def parameter_names(class_path):
    """The arguments of the class at class_path (the options under --model. or --data. when it is named there)."""
    module, _, name = class_path.rpartition(".")
    try:
        return list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def option_names(defaults):
    """The option names of a parser's defaults (a Namespace): `trainer.max_epochs`, `model.lr` (init_args left out)."""
    return [key.replace(".init_args.", ".") for key in defaults.keys()
            if not key.startswith("__") and not key.endswith(".class_path")]


def value_error(error, config):
    """The message of a ValueError that a class raised while the config was made into objects ("lr must be > 0, got
    -0.1", or Lightning's "`max_epochs` must be ..."), naming the option (--model.lr) when one argument of one section
    has that name and value."""
    while isinstance(error.__cause__ or error.__context__, ValueError):  # jsonargparse wraps it in its union error
        error = error.__cause__ or error.__context__
    message = re.sub(r"^`(\w+)`", r"\1", str(error))  # Lightning's own: "`max_epochs` must be ..."
    named = re.match(r"(\w+) must .*?(?:, got (.*))?$", message)
    if not named:
        return message
    name, given = named.groups()
    found = []
    for section, value in vars(config).items():
        arguments = value.get("init_args", value) if isinstance(value, Namespace) else None
        if isinstance(arguments, Namespace) and name in arguments:
            found.append((section, plain(arguments[name])))
    if len(found) > 1 and given is not None:  # grad_check and layer_stats both have every_n_steps: the one given
        found = [(section, value) for section, value in found if str(value) == given]
    return f"--{found[0][0]}.{message}" if len(found) == 1 else message


def unlogged_monitor(error):
    """Lightning's error for a --checkpoint.monitor that the run does not log, as one line naming the metrics it does
    log (None for any other error). NOTE: Lightning finds it at the first validation's end, with a 40-line traceback.
    """
    missing = re.search(r"ModelCheckpoint\(monitor='(.*?)'\)`? could not find the monitored key in the returned "
                        r"metrics: \[(.*?)\]", str(error))
    if not missing:
        return None
    keys = [key.strip("' ") for key in missing.group(2).split(",")]
    logged = ", ".join(key for key in keys if key not in ("epoch", "step"))  # NOTE: Lightning's own two left out
    return f"--checkpoint.monitor {missing.group(1)} is not a metric of this run; it logs {logged}"
