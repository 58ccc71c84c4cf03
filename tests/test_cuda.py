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


def cuda_inputs(case):
    """The case's float32 inputs on CUDA, the differentiable ones requiring grad."""
    from manual_bp.testing import differentiable_positions

    inputs = case.make_inputs(case.shapes[-1], torch.float32, "cuda", torch.Generator().manual_seed(0), False)
    grad_positions = differentiable_positions(inputs, case.input_names, case.constants)
    return [t.requires_grad_() if i in grad_positions else t for i, t in enumerate(inputs)]


@pytest.mark.parametrize("case", CASES)
def test_no_op_synchronises(case):
    """Forward and backward of every op, value checks included, with any host-device synchronisation an error."""
    inputs = cuda_inputs(case)
    upstream = torch.ones_like(case.manual(*inputs))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        case.manual(*inputs).backward(upstream)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("case", [c for c in CASES if "dropout" not in c.id])
def test_a_cuda_graph_captures_every_op_with_its_checks(case):
    """Forward + backward of each op captured as a CUDA graph (no switch), and its replay equals an eager run."""
    inputs = cuda_inputs(case)
    leaves = [t for t in inputs if t.requires_grad]
    eager = case.manual(*inputs)
    upstream = torch.randn_like(eager)
    eager_grads = torch.autograd.grad(eager, leaves, upstream, allow_unused=True)
    # NOTE: the eager graph goes, and with it the leaves' AccumulateGrad nodes made on the default stream: a backward
    # captured into them would make the default stream wait on the capturing one, which capture forbids
    eager = eager.detach()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # NOTE: a warm-up on a side stream first, as torch.cuda.graphs advises
        torch.autograd.grad(case.manual(*inputs), leaves, upstream, allow_unused=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = case.manual(*inputs)
        grads = torch.autograd.grad(output, leaves, upstream, allow_unused=True)
    graph.replay()
    torch.testing.assert_close(output, eager)
    for got, want in zip(grads, eager_grads):
        if want is not None:
            torch.testing.assert_close(got, want)


def test_an_out_of_range_class_index_is_a_device_side_assert_naming_the_target():
    """On CUDA the class-index check is a device-side assert (no synchronisation): the process's CUDA context stops,
    as with torch's own check, and the kernel's assertion line carries the check's message. Run in a child process,
    since a device-side assert ends the CUDA context for good."""
    import subprocess
    import sys

    code = ("import torch, manual_bp.functional as MF\n"
            "loss = MF.cross_entropy(torch.randn(4, 3, device='cuda'), torch.tensor([0, 1, 5, 2], device='cuda'))\n"
            "torch.cuda.synchronize()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "device-side assert triggered" in done.stderr
    assert "target must hold class indices in [0, 2] (C=3) or ignore_index=-100" in done.stdout + done.stderr


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
def test_an_eager_training_step_does_not_synchronise(loss):
    from models.mlp import build_mlp, classification_loss

    net = build_mlp(784, (128,), 10, "relu", "manual", 0.2, "batch").cuda()
    optimizer = torch.optim.Adam(net.parameters(), fused=True)
    images, labels = torch.randn(64, 784, device="cuda"), torch.randint(10, (64,), device="cuda")
    for sync_mode in ("default", "error"):  # the first step makes the optimizer's state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(sync_mode)
        try:
            optimizer.zero_grad(set_to_none=True)
            classification_loss(net(images), labels, loss, "manual").backward()
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
