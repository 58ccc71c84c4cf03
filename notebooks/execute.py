"""Run the notebooks and save them with their outputs (what GitHub shows):

    python -m notebooks.execute                 # every notebooks/*.ipynb, in place
    python -m notebooks.execute --check         # run them and compare what each cell prints with the saved outputs

tests/test_notebook.py runs the check, so the saved outputs cannot go stale.
NOTE: the check compares the printed lines with every number masked (the same lines, words and layout); the numbers
themselves move in their last digits from one CPU to another, and the test checks the ones that matter on their own.
"""
import re
import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent


def execute(path, timeout=120):
    """The notebook at path, run from its own folder: every cell's outputs fresh."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return notebook


def printed(notebook):
    """[(cell number, text the cell printed)] for the code cells, images and timings left out."""
    return [(number, "".join(output.get("text", "") for output in cell.get("outputs", [])
                             if output.get("name") == "stdout"))
            for number, cell in enumerate(notebook.cells) if cell.cell_type == "code"]


def masked(text):
    return re.sub(r"-?\d+(\.\d+)?(e[+-]\d+)?", "#", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the saved outputs instead of saving")
    args = parser.parse_args(argv)
    stale = 0
    for path in sorted(FOLDER.glob("*.ipynb")):
        fresh = execute(path)
        if args.check:
            saved = nbformat.read(path, as_version=4)
            for (number, now), (_, before) in zip(printed(fresh), printed(saved)):
                if masked(now) != masked(before):
                    stale += 1
                    print(f"{path.name}, cell {number}: printed output differs from the saved one:\n{now}")
        else:
            nbformat.write(fresh, path)
            print(f"{path.name}: saved with its outputs")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
