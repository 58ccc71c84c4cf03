"""python -m manual_bp.check: the table a user runs, every row passing, exit status 0 (1 on any failure)."""
import pytest
import torch

from manual_bp import cases, check
from manual_bp.case_inputs import unary_inputs
import manual_bp.functional as MF


def test_check_prints_every_op_and_passes_on_cpu(capsys):
    assert check.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for case in cases.OP_CASES:
        assert case.name in out
    assert "FAIL" not in out
    assert out.strip().endswith("0 failed")
    assert "largest float32 relative gradient error per op" in out


def test_check_exits_non_zero_when_an_op_is_wrong(capsys, monkeypatch):
    broken = cases.OpCase("broken_relu", lambda F, x: F.relu(x) * (1.001 if F is MF else 1), ("input",),
                          unary_inputs, ((4, 3),))
    monkeypatch.setattr(cases, "OP_CASES", [broken])
    assert check.main(["--device", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_check_on_cuda_without_a_gpu_says_so(capsys):
    with pytest.raises(SystemExit) as exit_info:
        check.main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device is available" in capsys.readouterr().err
