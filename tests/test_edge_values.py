"""Edge values where a naive formula would give NaN or inf; manual must equal native there too."""
import pytest
import torch
import torch.nn.functional as F

from manual_bp import functional as MF
from manual_bp.testing import compare_fns


def check(manual, native, *inputs, names=("input", "target")):
    result = compare_fns(manual, native, inputs, names)
    result.raise_if_failed()
    return result


def assert_finite(fn, *inputs):
    leaves = [t.clone().requires_grad_() if t.is_floating_point() else t for t in inputs]
    output = fn(*leaves)
    output.sum().backward()
    assert torch.isfinite(output).all(), output
    for leaf in leaves:
        if leaf.is_floating_point():
            assert torch.isfinite(leaf.grad).all(), leaf.grad


def test_sigmoid_saturates_at_plus_minus_100_without_nan_or_inf():
    z = torch.tensor([-100.0, -30.0, 0.0, 30.0, 100.0])
    check(MF.sigmoid, torch.sigmoid, z, names=("input",))
    assert_finite(MF.sigmoid, z)
    assert MF.sigmoid(z)[[0, -1]].tolist() == [0.0, 1.0]


def test_tanh_saturates_without_nan():
    z = torch.tensor([-100.0, 0.0, 100.0], dtype=torch.float64)
    check(MF.tanh, torch.tanh, z, names=("input",))
    assert_finite(MF.tanh, z)


def test_relu_at_exactly_zero_has_derivative_zero_like_torch():
    z = torch.tensor([-1.0, 0.0, -0.0, 1e-30, 2.0], requires_grad=True)
    MF.relu(z).sum().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    check(MF.relu, torch.relu, z.detach(), names=("input",))


def test_bce_at_exactly_0_and_1_equals_torch_for_every_reduction():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=torch.float64)
    for reduction in ("none", "mean", "sum"):
        result = check(lambda a: MF.binary_cross_entropy(a, y, reduction=reduction),
                       lambda a: F.binary_cross_entropy(a, y, reduction=reduction), p, names=("input",))
        assert result.errors["output"][0] == 0.0
    per_element = MF.binary_cross_entropy(p, y, reduction="none")
    assert per_element[:4].tolist() == [0.0, 0.0, 100.0, 100.0]  # log clamped at -100


def test_bce_target_gradient_at_0_and_1_is_the_derivative_of_the_clamped_loss():
    # The loss is linear in y with slope clamp(log(1 - p)) - clamp(log p); at p = 0 or 1 that slope is +-100.
    # NOTE: torch returns +-inf here (its target gradient skips the clamp its forward applies); we keep the
    # derivative of the value actually computed, which is finite.
    p = torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64)
    y = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    MF.binary_cross_entropy(p, y, reduction="sum").backward()
    expected = torch.tensor([100.0, -100.0, torch.log(torch.tensor(3.0)).item()], dtype=torch.float64)
    torch.testing.assert_close(y.grad, expected)


def test_bce_with_logits_large_logits_stay_finite():
    z = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4])
    y = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    check(MF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, z, y)
    assert_finite(MF.binary_cross_entropy_with_logits, z, y)


def test_cross_entropy_with_logits_of_magnitude_1e4():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]])
    target = torch.tensor([1, 2, 0])
    for reduction in ("none", "mean", "sum"):
        check(lambda a, t: MF.cross_entropy(a, t, reduction=reduction),
              lambda a, t: F.cross_entropy(a, t, reduction=reduction), logits, target)
    assert_finite(MF.cross_entropy, logits, target)
    assert MF.cross_entropy(logits, target, reduction="none").tolist() == [2e4, 0.0, 0.6931471824645996]


def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    x = torch.ones(200_000)
    y = MF.dropout(x, p=0.3, training=True)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.005  # binomial std 0.001
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert MF.dropout(x, p=0.3, training=False) is x


def test_dropout_module_is_identity_in_eval_mode():
    import manual_bp.nn as mnn

    layer = mnn.Dropout(0.5).eval()
    x = torch.randn(4, 5)
    assert torch.equal(layer(x), x) and repr(layer) == "Dropout(p=0.5)"


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient_as_torch():
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.full((4,), -100)
    for weight in (None, torch.rand(3, dtype=torch.float64)):
        for smoothing in (0.0, 0.1):
            for reduction in ("mean", "sum", "none"):
                results = []
                for fn in (MF.cross_entropy, F.cross_entropy):
                    leaf = logits.clone().requires_grad_()
                    loss = fn(leaf, target, weight, reduction=reduction, label_smoothing=smoothing)
                    results.append((loss, torch.autograd.grad(loss.sum(), leaf)[0]))
                torch.testing.assert_close(results[0], results[1], equal_nan=True)
                assert (results[0][0].isnan().all() if reduction == "mean" else (results[0][0] == 0).all())
                assert (results[0][1] == 0).all()


def test_cross_entropy_mean_divides_by_the_weights_of_the_counted_targets():
    logits, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, -100, 2])
    weight = torch.tensor([0.5, 3.0, 2.0], dtype=torch.float64)
    per_sample = MF.cross_entropy(logits, target, weight, reduction="none")
    expected = per_sample.sum() / (0.5 + 2.0 + 2.0)
    torch.testing.assert_close(MF.cross_entropy(logits, target, weight), expected)
    torch.testing.assert_close(F.cross_entropy(logits, target, weight), expected)


def test_dropout_with_p_1_gives_zeros_and_zero_gradient_as_torch():
    x = torch.randn(6, 5, requires_grad=True)
    y = MF.dropout(x, p=1.0)
    assert torch.equal(y, F.dropout(x, p=1.0)) and (y == 0).all()
    y.sum().backward()
    assert (x.grad == 0).all()


def test_linear_with_zero_in_features_gives_the_bias_and_zero_gradients_as_torch():
    x, weight = torch.randn(3, 4, 0, requires_grad=True), torch.randn(5, 0, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    check(MF.linear, F.linear, x.detach(), weight.detach(), bias.detach(), names=("input", "weight", "bias"))
    MF.linear(x, weight, bias).sum().backward()
    assert weight.grad.shape == (5, 0) and torch.equal(bias.grad, torch.full((5,), 12.0))


def test_cross_entropy_probabilities_ignore_a_negative_ignore_index_as_torch():
    logits, probs = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    check(lambda a, t: MF.cross_entropy(a, t, ignore_index=-5), lambda a, t: F.cross_entropy(a, t, ignore_index=-5),
          logits, probs)


def test_cross_entropy_with_every_class_weight_zero_is_nan_with_nan_gradient_as_torch():
    logits, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    results = []
    for fn in (MF.cross_entropy, F.cross_entropy):
        leaf = logits.clone().requires_grad_()
        loss = fn(leaf, target, torch.zeros(3, dtype=torch.float64))
        results.append((loss, torch.autograd.grad(loss, leaf)[0]))
    torch.testing.assert_close(results[0], results[1], equal_nan=True)
    assert results[0][0].isnan() and results[0][1].isnan().all()


def test_nll_loss_reads_nothing_at_an_ignored_target():
    """An ignored target is read at class 0 and masked; a log-probability of −inf there must not turn into NaN."""
    log_probs = torch.tensor([[-float("inf"), -0.1, -2.0], [-1.0, -0.5, -2.0]], dtype=torch.float64)
    target = torch.tensor([-100, 1])
    for reduction in ("none", "sum", "mean"):
        check(lambda x, t: MF.nll_loss(x, t, reduction=reduction), lambda x, t: F.nll_loss(x, t, reduction=reduction),
              log_probs, target)
    assert MF.nll_loss(log_probs, target, reduction="none").tolist() == [0.0, 0.5]


def test_softmax_family_of_a_0_d_tensor_as_torch():
    for name, expected in (("softmax", 1.0), ("log_softmax", 0.0)):
        x = torch.tensor(1.5, dtype=torch.float64)
        check(lambda a: getattr(MF, name)(a, 0), lambda a: getattr(F, name)(a, 0), x, names=("input",))
        assert getattr(MF, name)(x, 0).item() == expected


def test_nll_loss_with_every_counted_weight_0_is_nan_with_nan_at_the_targets_as_torch():
    log_probs, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, -100, 2, 1])
    weight = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    results = []
    for fn in (MF.nll_loss, F.nll_loss):
        leaf = log_probs.clone().requires_grad_()
        loss = fn(leaf, target, weight)
        results.append((loss, torch.autograd.grad(loss, leaf)[0]))
    torch.testing.assert_close(results[0], results[1], equal_nan=True)
    assert results[0][1].isnan().sum() == 3  # the three counted targets; the ignored row is 0


def test_softmax_family_over_an_empty_dimension_is_empty_as_torch():
    for shape, dim in (((3, 0), 1), ((0, 3), 0), ((0, 3), 1), ((2, 0, 4), 1)):
        for name in ("softmax", "log_softmax"):
            x = torch.randn(shape, dtype=torch.float64)
            result = check(lambda a: getattr(MF, name)(a, dim), lambda a: getattr(F, name)(a, dim), x,
                           names=("input",))
            assert result.ok and getattr(MF, name)(x, dim).shape == shape


def test_relu_at_nan_is_nan_with_gradient_zero_where_torch_passes_the_upstream_gradient():
    """A documented difference (docs/numerical-notes.md): ∂L/∂Z = ∂L/∂A ⊙ sign(A), and sign(NaN) is 0."""
    z = torch.tensor([float("nan"), -1.0, 2.0], requires_grad=True)
    output = MF.relu(z)
    output.backward(torch.full((3,), 3.0))
    assert output[0].isnan() and output[1:].tolist() == [0.0, 2.0]
    assert z.grad.tolist() == [0.0, 0.0, 3.0]
    native = z.detach().requires_grad_()
    torch.relu(native).backward(torch.full((3,), 3.0))
    assert native.grad.tolist() == [3.0, 0.0, 3.0]


def test_normalisation_whose_variance_overflows_float32_is_nan_not_silent_zeros():
    """|x − μ| past ~1e19 in float32: σ² overflows to inf and 1/√σ² rounds to 0; the result is NaN, as torch's
    layer_norm (torch's batch_norm gives silent zeros there), never a silent 0."""
    row = torch.tensor([[1e20, -1e20, 3e20], [1.0, 2.0, 3.0]])
    for fn in (lambda x: MF.layer_norm(x, (3,)), lambda x: MF.batch_norm(x.t(), None, None, training=True).t()):
        x = row.clone().requires_grad_()
        output = fn(x)
        output.backward(torch.ones_like(output))
        assert output[0].isnan().all() and x.grad[0].isnan().all()
        assert torch.isfinite(output[1]).all() and torch.isfinite(x.grad[1]).all()
    assert F.layer_norm(row, (3,))[0].isnan().all()
    torch.testing.assert_close(MF.layer_norm(row * 0.1, (3,)), F.layer_norm(row.double() * 0.1, (3,)).float())


def test_batch_norm_refuses_momentum_none_and_eps_0_in_training_naming_the_argument():
    x, mean, var = torch.randn(4, 3), torch.zeros(3), torch.ones(3)
    with pytest.raises(TypeError, match=r"momentum must be a number.*got None.*BatchNorm1d\(momentum=None\)"):
        MF.batch_norm(x, mean, var, training=True, momentum=None)
    with pytest.raises(TypeError, match="momentum"):
        F.batch_norm(x, mean, var, training=True, momentum=None)  # torch refuses it too
    assert torch.equal(mean, torch.zeros(3)) and torch.equal(var, torch.ones(3))  # nothing was updated
    for eps in (0.0, -1e-5):
        with pytest.raises(ValueError, match=f"eps must be > 0 when training.*got {eps}"):
            MF.batch_norm(x, None, None, training=True, eps=eps)
        with pytest.raises(ValueError, match="eps must be positive"):
            F.batch_norm(x, None, None, training=True, eps=eps)
