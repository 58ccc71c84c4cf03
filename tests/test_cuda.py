"""The same comparisons on CUDA; skipped cleanly on machines without a GPU."""
import pytest
import torch

from manual_bp.cases import OP_CASES, compare

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CASES = [pytest.param(case, id=case.name) for case in OP_CASES]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_native(case, dtype):
    compare(case, case.shapes[-1], dtype, device="cuda").raise_if_failed()


@pytest.mark.parametrize("case", CASES)
def test_cuda_noncontiguous_matches_native(case):
    compare(case, case.shapes[-1], torch.float32, device="cuda", noncontiguous=True).raise_if_failed()
