"""python -m manual_bp.check: the lines a user sees, every op passing, exit status 0 (1 on any failure)."""
import re

import pytest
import torch

from manual_bp import cases, check
from manual_bp.case_inputs import unary_inputs
import manual_bp.functional as MF


def test_check_prints_one_line_per_op_and_passes_on_cpu(capsys):
    assert check.main(["--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(cases.OP_CASES) + 2  # the header, a line per op, a blank line and the count
    assert lines[0].split()[:5] == ["op", "device", "rows", "status", "largest"]
    for case, line in zip(cases.OP_CASES, lines[1:]):
        assert line.startswith(case.name + " ") and line.split()[-3:-1] == ["6", "ok"], line  # 4 dtypes + 2
    assert lines[-1] == f"{6 * len(cases.OP_CASES)} passed, 0 failed"


def test_check_exits_non_zero_when_an_op_is_wrong(capsys, monkeypatch):
    broken = cases.OpCase("broken_relu", lambda F, x: F.relu(x) * (1.001 if F is MF else 1), ("input",),
                          unary_inputs, ((4, 3),))
    monkeypatch.setattr(cases, "OP_CASES", [broken])
    assert check.main(["--device", "cpu"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("broken_relu ") and lines[1].split()[3] == "FAIL"
    assert lines[2].startswith("    broken_relu[4, 3] (float64): output differs from native: ")
    assert re.fullmatch(r"\d passed, [1-6] failed", lines[-1])
    assert check.main(["--device", "cpu", "--table"]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("op") and "gradcheck" in table[0] and len([row for row in table if "FAIL" in row]) >= 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_check_on_cuda_without_a_gpu_says_so(capsys):
    with pytest.raises(SystemExit) as exit_info:
        check.main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device is available" in capsys.readouterr().err
