"""torch.func: jacrev, vmap and a Hessian (jacrev of jacrev) of each op equal the native op's; the lecture's Jacobian
facts for y = Wx."""
import pytest
import torch
from torch.func import jacrev, vmap

import manual_bp.nn as mnn
from manual_bp import functional as MF
from manual_bp.cases import OP_CASES
from manual_bp.testing import differentiable_positions as differentiable_positions_of

CASES = [pytest.param(case, id=case.name) for case in OP_CASES]


def differentiable_positions(case, inputs):
    return tuple(differentiable_positions_of(inputs, case.input_names, case.constants))


@pytest.mark.parametrize("case", CASES)
def test_jacrev_matches_native(case):
    inputs = case.make_inputs(case.shapes[1], torch.float64, "cpu", torch.Generator().manual_seed(0), False)
    argnums = differentiable_positions(case, inputs)
    manual = jacrev(case.manual, argnums=argnums)(*inputs)
    native = jacrev(case.native, argnums=argnums)(*inputs)
    torch.testing.assert_close(manual, native)


@pytest.mark.parametrize("case", CASES)
def test_vmap_matches_native(case):
    generator = torch.Generator().manual_seed(0)
    samples = [case.make_inputs(case.shapes[1], torch.float64, "cpu", generator, False) for _ in range(3)]
    batched = [torch.stack(parts) for parts in zip(*samples)]
    torch.testing.assert_close(vmap(case.manual)(*batched), vmap(case.native)(*batched))


@pytest.mark.parametrize("case", CASES)
def test_vmap_of_grad_gives_per_sample_gradients(case):
    generator = torch.Generator().manual_seed(1)
    samples = [case.make_inputs(case.shapes[1], torch.float64, "cpu", generator, False) for _ in range(3)]
    batched = [torch.stack(parts) for parts in zip(*samples)]

    def scalar(fn):
        return lambda *inputs: fn(*inputs).sum()

    manual = vmap(torch.func.grad(scalar(case.manual)))(*batched)
    native = vmap(torch.func.grad(scalar(case.native)))(*batched)
    torch.testing.assert_close(manual, native)


@pytest.mark.parametrize("case", CASES)
def test_a_hessian_by_reverse_over_reverse_matches_torchs_hessian(case):
    # forward mode (jvp, jacfwd, and so torch.func.hessian) needs a jvp no Function defines; jacrev of jacrev runs
    # each backward twice, the second time through the ops the first one recorded. The outputs are weighted at
    # random: their plain sum has a zero Hessian for some ops (a softmax sums to 1). In the op's input only: every
    # input's second derivatives are gradgradcheck's, in tests/test_ops.py.
    generator = torch.Generator().manual_seed(0)
    inputs = case.make_inputs(case.shapes[1], torch.float64, "cpu", generator, False)
    first = differentiable_positions(case, inputs)[0]
    weight = torch.randn(case.native(*inputs).shape, dtype=torch.float64, generator=generator)

    def weighted(fn):
        return lambda x: (fn(*inputs[:first], x, *inputs[first + 1:]) * weight).sum()

    torch.testing.assert_close(jacrev(jacrev(weighted(case.manual)))(inputs[first]),
                               torch.func.hessian(weighted(case.native))(inputs[first]))


def test_jacobian_of_wx_with_respect_to_x_is_w():
    weight, x = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    jacobian = jacrev(MF.linear, argnums=0)(x, weight)  # dy/dx: (3, 5)
    torch.testing.assert_close(jacobian, weight, rtol=0, atol=0)


def test_jacobian_of_wx_with_respect_to_w_is_x_on_row_i_only():
    weight, x = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    jacobian = jacrev(MF.linear, argnums=1)(x, weight)  # dy_i/dW_jk: (3, 3, 5)
    for i in range(3):
        for j in range(3):
            expected = x if i == j else torch.zeros_like(x)
            torch.testing.assert_close(jacobian[i, j], expected, rtol=0, atol=0)


# ------------------------------------------------- batch norm's running statistics under torch.func

VMAP_REFUSAL = r"cannot update running_mean / running_var under torch.func.vmap"


def test_vmap_of_batch_norm_updating_running_statistics_raises_clearly():
    running_mean, running_var = torch.zeros(3), torch.ones(3)
    with pytest.raises(RuntimeError, match=VMAP_REFUSAL):
        vmap(lambda x: MF.batch_norm(x, running_mean, running_var, training=True))(torch.randn(2, 5, 3))
    with pytest.raises(RuntimeError, match=VMAP_REFUSAL):  # per-sample gradients: vmap of grad
        vmap(torch.func.grad(lambda x: MF.batch_norm(x, running_mean, running_var, training=True).square().sum()))(
            torch.randn(2, 5, 3))
    with pytest.raises(RuntimeError, match=VMAP_REFUSAL):
        vmap(mnn.BatchNorm1d(3))(torch.randn(2, 5, 3))
    torch.testing.assert_close(running_mean, torch.zeros(3), rtol=0, atol=0)  # untouched


@pytest.mark.parametrize("make", [lambda nn: nn.BatchNorm1d(3, track_running_stats=False),
                                  lambda nn: torch.func.replace_all_batch_norm_modules_(nn.BatchNorm1d(3)),
                                  lambda nn: nn.BatchNorm1d(3).eval()],
                         ids=["track_running_stats=False", "replace_all_batch_norm_modules_", "eval"])
def test_vmap_of_batch_norm_without_a_running_statistics_update_matches_torch(make):
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(vmap(make(mnn))(x), vmap(make(torch.nn))(x))


@pytest.mark.parametrize("transform", ["jacrev", "grad"])
def test_grad_transforms_of_batch_norm_update_running_statistics_as_torch(transform):
    x, scores = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    results = []
    for batch_norm in (MF.batch_norm, torch.nn.functional.batch_norm):
        stats = (torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
        if transform == "jacrev":
            derivative = jacrev(lambda x: batch_norm(x, *stats, training=True))(x)
        else:
            derivative = torch.func.grad(lambda x: (batch_norm(x, *stats, training=True) * scores).sum())(x)
        results.append((derivative, *stats))
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("loss", [MF.cross_entropy, MF.nll_loss])
def test_an_out_of_range_class_index_under_vmap_is_the_one_line_error(loss):
    """On the CPU the gather's bound check still sees a bad target under vmap; the message then names no value."""
    targets = torch.tensor([[0, 1, 3, 2], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"^target must hold class indices in \[0, 2\] \(C=3\) or ignore_index=-100$"):
        vmap(loss)(torch.randn(2, 4, 3), targets)
