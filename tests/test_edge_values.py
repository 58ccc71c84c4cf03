"""Edge values where a naive formula would give NaN or inf; manual must equal native there too."""
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
