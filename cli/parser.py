"""train.py's argument parser: errors in one line naming the option, and a short --help (the usage, what runs, the
top-level options and the sections; each section's options with --<section>.help)."""
import argparse
import sys

from pytorch_lightning.cli import LightningArgumentParser

from cli.errors import concise, option_names

HELP = """Without a subcommand: fit, then test the best checkpoint (configs/mnist.yaml, then any --config on top).
Every option is --section.key VALUE. List a section's options with --trainer.help, --checkpoint.help, ... (below);
the model's and the data's with --model.help MNISTClassifier, --data.help MNISTDataModule (or another class_path).
Lightning's subcommands: python train.py fit|validate|test|predict --help."""
# the sections that --help lists, each with --<section>.help for its options (model and data: --model.help CLASS)
SECTIONS = {
    "trainer": "Lightning's Trainer: max_epochs, accelerator, devices, precision, logger, ...",
    "checkpoint": "ModelCheckpoint: best-epochNN.ckpt, by validation accuracy",
    "resume_checkpoint": "ModelCheckpoint: last.ckpt every N training steps",
    "graceful_interrupt": "Ctrl-C and SIGTERM: save, then print the resume command",
    "training_steps": "TrainingSteps: CUDA graph replay on one GPU, the epoch's loss and accuracy, the NaN stop",
    "lr_monitor": "LearningRateMonitor: the learning rate in TensorBoard",
    "grad_check": "NativeGradientCheck: the handwritten gradient against autograd's",
    "layer_stats": "LayerStatistics: per-layer activation and gradient statistics",
    "test_report": "TestReport: misclassified digits, confusion matrix, hyperparameters",
}


class SectionHelp(argparse.Action):
    """--<section>.help: the options of that section (--trainer.help: the Trainer's), then exit."""

    def __init__(self, option_strings, dest, section=None, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)
        self.section = section

    def __call__(self, parser, namespace, values, option_string=None):
        parser.help_section = self.section
        parser.print_help()
        parser.exit()


class ConciseParser(LightningArgumentParser):
    """Errors in one line naming the option (`--help` has the usage), exit status 2. A short --help: the usage, HELP,
    the top-level options and the sections; each section's options with --<section>.help."""

    help_section = None  # the section whose options the help shows; None: the short help
    arguments = ()  # the command line (for_arguments): to name an option given without its value
    sections = None  # the argument group of the --<section>.help options

    def add_section_helps(self, sections):
        self.sections = self.add_argument_group("sections (list the options of one with --<section>.help)")
        for section, text in sections.items():
            self.sections.add_argument(f"--{section}.help", action=SectionHelp, section=section, help=text)

    def format_help(self):
        # NOTE: argparse prints every group of self._action_groups; jsonargparse's format_help (the defaults from
        # configs/mnist.yaml) prints the ones shown here, and the full list is put back after
        if self.sections is None:  # a parser of one class (--model.help MNISTClassifier): all of it
            return super().format_help()
        every_group = self._action_groups
        self._action_groups = [group for group in every_group if self.shown(group)]
        try:
            return super().format_help()
        finally:
            self._action_groups = every_group

    def shown(self, group):
        """Whether --help shows the argument group: the top-level options and the sections; with --<section>.help,
        that section's options and where their defaults come from."""
        keys = [action.dest for action in group._group_actions]
        if self.help_section is None:
            return group is self.sections or bool(keys) and all("." not in key for key in keys)
        if not keys:
            return group.title == "default config file locations"
        return all(key == self.help_section or key.startswith(self.help_section + ".") for key in keys)

    @classmethod
    def for_arguments(cls, arguments):
        """This parser class for one command line (`arguments`), which its errors can then quote: every parser
        LightningCLI makes from it, a subcommand's too, knows the whole line."""
        return type(cls.__name__, (cls,), {"arguments": tuple(arguments)})

    def error(self, message, ex=None):
        if not self.exit_on_error:
            return super().error(message, ex)
        # NOTE: the option names only for an unknown option: then the defaults (configs/mnist.yaml) are sound; with
        # the parser's own options (--print_config, --ckpt_path, ...; argparse keeps them in _actions)
        unknown = message.startswith("unrecognized arguments") or "is not accepted" in message
        options = option_names(self.get_defaults()) + [name.lstrip("-") for action in self._actions
                                                       for name in action.option_strings] if unknown else ()
        message = concise(message, options, self.arguments)
        sys.stderr.write(f"error: {message}\n(python train.py --help lists the options)\n")
        sys.exit(2)
