"""The command line of the lecture scripts: --help from the docstring, checked numbers, a new folder per run, and
the report a run ends with.

Light on purpose (argparse and the run folders only): a script that needs no torch does not wait for it.
"""
import argparse
from pathlib import Path

from models.run_folder import RunFolderError, claim_version


def parser_for(docstring):
    """An argparse parser with the module docstring's first line for --help: any argument it does not define is
    refused in argparse's one line (a script without options takes none, rather than ignoring a misspelt one)."""
    return argparse.ArgumentParser(description=docstring.splitlines()[0])


def positive_int(text):
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def new_run_folder(parser, logdir):
    """A new folder logdir/version_<n> for this run, as train.py's runs: a second run never writes into the curves of
    the first (TensorBoard would draw both as one line going back and forth). A logdir that cannot hold one is the
    parser's error, naming --logdir."""
    try:
        return Path(logdir) / f"version_{claim_version(logdir, option='--logdir')}"
    except RunFolderError as error:
        parser.error(str(error))


def report(figure, out, verdict_lines, where=""):
    """Save the figure as a PNG at `out` (its folder made), then print the verdict lines and where the figure is."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    for line in verdict_lines:
        print(line)
    print(f"figure: {out}{where}")
