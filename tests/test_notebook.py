"""notebooks/backprop_by_hand.ipynb runs from its first cell, prints what its saved outputs show (numbers aside), and
its numbers say what the text claims."""
import re

import nbformat

from notebooks import execute
from tests.helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "backprop_by_hand.ipynb"


def test_the_notebook_runs_and_its_saved_outputs_are_current():
    fresh = execute.execute(NOTEBOOK)
    errors = [output for cell in fresh.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    saved = nbformat.read(NOTEBOOK, as_version=4)
    now, before = execute.printed(fresh), execute.printed(saved)
    assert [execute.masked(text) for _, text in now] == [execute.masked(text) for _, text in before]
    text = "\n".join(printed for _, printed in now)
    assert "by hand:  {'dd/da': 11.0, 'dd/db': 4.0}\nautograd: {'dd/da': 11.0, 'dd/db': 4.0}" in text
    assert "sigmoid[8, 5]" in text and re.search(r"wrong sigmoid\[8, 5\] .* FAIL", text)
    differences = [float(value) for value in re.findall(r"largest difference to autograd (\S+)", text)]
    assert len(differences) == 4 and max(differences) < 1e-12
    accuracy = float(re.findall(r"validation accuracy ([\d.]+)%", text)[-1])
    assert accuracy > 80  # 2 epochs on 2,500 digits; chance is 10%
    images = [output for cell in fresh.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) == 1
