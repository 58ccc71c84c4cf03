"""Bad input gets a clear error naming the argument, the expected and the actual value."""
import pytest
import torch

import manual_bp.nn as mnn
from manual_bp import functional as MF

x4, w34 = torch.randn(2, 4), torch.randn(3, 4)
probs, labels = torch.rand(5, 3), torch.randint(3, (5,))

BAD_CALLS = [
    (lambda: mnn.Linear(784, 10)(torch.randn(8, 783)), ValueError, r"in_features=784.*got shape \(8, 783\)"),
    (lambda: MF.linear(torch.ones(2, 4, dtype=torch.int64), w34), TypeError, "input must be a floating-point.*int64"),
    (lambda: MF.linear(x4, w34.double()), TypeError, r"weight must have the dtype of input \(torch.float32\)"),
    (lambda: MF.linear(x4, torch.randn(3, 4, 1)), ValueError, r"weight must be 2-D.*got shape \(3, 4, 1\)"),
    (lambda: MF.linear(x4, w34, torch.randn(4)), ValueError, r"bias must have shape \(3,\), got \(4,\)"),
    (lambda: MF.linear([1.0, 2.0], w34), TypeError, "input must be a torch.Tensor, got list"),
    (lambda: MF.relu(torch.ones(3, dtype=torch.bool)), TypeError, "input must be a floating-point.*torch.bool"),
    (lambda: MF.sigmoid(torch.arange(3)), TypeError, "input must be a floating-point.*int64"),
    (lambda: MF.mse_loss(torch.randn(4, 2), torch.randn(4)), ValueError, r"expected \(4, 2\), got \(4,\)"),
    (lambda: MF.mse_loss(probs, probs, reduction="avg"), ValueError, r"reduction must be one of.*got 'avg'"),
    (lambda: mnn.MSELoss(reduction="max"), ValueError, "reduction must be one of.*got 'max'"),
    (lambda: MF.mse_loss(probs, labels.float()[:, None].expand(5, 3).long()), TypeError, "target must be a floating"),
    (lambda: MF.binary_cross_entropy(probs * 2, probs), ValueError, r"input must have every element in \[0, 1\]"),
    (lambda: MF.binary_cross_entropy(probs, probs - 1), ValueError, r"target must have every element in \[0, 1\]"),
    (lambda: MF.binary_cross_entropy(torch.full((2,), float("nan")), torch.ones(2)), ValueError, "input.*nan"),
    (lambda: MF.binary_cross_entropy_with_logits(probs, probs + 1), ValueError, r"target must have every element"),
    (lambda: MF.cross_entropy(probs, labels.float()), TypeError, "target must hold class indices.*float32"),
    (lambda: MF.cross_entropy(probs, torch.tensor([0, 1, 2, 3, 1])), ValueError,
     r"in \[0, 2\] \(C=3\) or ignore_index=-100, got 3"),
    (lambda: MF.cross_entropy(probs, torch.tensor([0, -1, 2, 0, 1])), ValueError,
     r"C=3\) or ignore_index=-100, got -1"),
    (lambda: MF.cross_entropy(probs, labels[:4]), ValueError, r"target must have shape \(5,\).*got \(4,\)"),
    (lambda: MF.cross_entropy(torch.tensor(1.0), labels), ValueError, r"\(N, C\) or \(N, C, d1, ..., dK\), got shape \(\)"),
    (lambda: MF.cross_entropy(torch.randn(2, 3, 4), labels), ValueError, r"shape \(2, 4\) for input of shape \(2, 3, 4\)"),
    (lambda: MF.dropout(probs, p=1.5), ValueError, r"p must be a probability in \[0, 1\], got 1.5"),
    # torch's optional arguments (issue 13)
    (lambda: MF.cross_entropy(probs, labels, torch.ones(4)), ValueError, r"weight must have shape \(3,\).*got \(4,\)"),
    (lambda: MF.cross_entropy(probs, labels, torch.ones(3, dtype=torch.int64)), TypeError, "weight must be a floating"),
    (lambda: MF.cross_entropy(probs, labels, torch.ones(3, requires_grad=True)), ValueError,
     "weight must not require grad"),
    (lambda: MF.cross_entropy(probs, labels, ignore_index=-100.0), TypeError,
     r"^ignore_index must be an integer, got float -100.0$"),
    (lambda: MF.nll_loss(probs, labels, ignore_index="none"), TypeError, r"^ignore_index must be an integer, got str"),
    (lambda: MF.cross_entropy(probs, probs, ignore_index=0), ValueError,
     "ignore_index is not supported with class-probability targets.*got ignore_index=0"),
    (lambda: MF.cross_entropy(probs, probs + 1), ValueError, r"target must have every element in \[0, 1\]"),
    (lambda: MF.cross_entropy(probs, labels, label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (lambda: MF.cross_entropy(probs, torch.tensor([0, 1, 5, -100, 1]), ignore_index=5), ValueError,
     r"C=3\) or ignore_index=5, got -100"),
    (lambda: MF.cross_entropy(probs, labels, None, True), ValueError, "size_average and reduce are deprecated"),
    (lambda: MF.binary_cross_entropy(probs, probs, torch.ones(4)), ValueError,
     r"weight must broadcast to the shape of input \(5, 3\), got \(4,\)"),
    (lambda: MF.binary_cross_entropy_with_logits(probs, probs, pos_weight=torch.ones(2)), ValueError,
     r"pos_weight must broadcast to the shape of input \(5, 3\), got \(2,\)"),
    (lambda: MF.binary_cross_entropy_with_logits(probs, probs, pos_weight=torch.ones(3).double()), TypeError,
     r"pos_weight must have the dtype of input \(torch.float32\)"),
    (lambda: MF.binary_cross_entropy_with_logits(probs, probs, pos_weight=torch.ones(3, requires_grad=True)),
     ValueError, "pos_weight must not require grad"),
    (lambda: MF.mse_loss(probs, probs, weight=torch.ones(3)), ValueError,
     r"weight must have the shape of input, expected \(5, 3\), got \(3,\)"),
    (lambda: MF.mse_loss(probs, probs, None, False), ValueError, "size_average and reduce are deprecated.*reduction="),
    (lambda: mnn.Dropout(p=-0.1), ValueError, r"p must be a probability in \[0, 1\], got -0.1"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS, ids=[m for _, _, m in BAD_CALLS])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ------------------------------------------------------------------ the next lecture's layers and loss
x83, x835 = torch.randn(8, 3), torch.randn(8, 3, 5)
stats3 = (torch.zeros(3), torch.ones(3))

NEW_LAYER_BAD_CALLS = [
    (lambda: MF.batch_norm(torch.randn(1, 3), *stats3, training=True), ValueError,
     r"more than 1 value per channel when training, got input size torch.Size\(\[1, 3\]\)"),
    (lambda: MF.batch_norm(torch.randn(3), None, None, training=True), ValueError, r"\(N, C\) or \(N, C, L\).*\(3,\)"),
    (lambda: MF.batch_norm(x83, None, None), ValueError, "must be given when training=False"),
    (lambda: MF.batch_norm(x83, torch.zeros(3), None, training=True), ValueError, "both be tensors or both be None"),
    (lambda: MF.batch_norm(x83, torch.zeros(4), torch.ones(4)), ValueError,
     r"running_mean must have shape \(3,\) for input of shape \(8, 3\), got \(4,\)"),
    (lambda: MF.batch_norm(x83, *stats3, torch.ones(3).double()), TypeError, r"weight must have the dtype of input"),
    (lambda: MF.batch_norm(x83.long(), *stats3), TypeError, "input must be a floating-point.*int64"),
    (lambda: mnn.BatchNorm1d(3)(torch.randn(2, 3, 4, 5)), ValueError, r"expected 2D or 3D input \(got 4D input\)"),
    (lambda: mnn.BatchNorm1d(4)(x835), ValueError, r"num_features=4 channels in dim 1, got shape \(8, 3, 5\)"),
    (lambda: MF.layer_norm(x835, (3,)), ValueError, r"input must end in normalized_shape=\(3,\), got shape \(8, 3, 5\)"),
    (lambda: MF.layer_norm(x835, 5, torch.ones(3)), ValueError, r"weight must have shape normalized_shape=\(5,\), got \(3,\)"),
    (lambda: mnn.LayerNorm((3, 4))(x835), ValueError, r"normalized_shape=\(3, 4\), got shape \(8, 3, 5\)"),
    (lambda: MF.gelu(x83, approximate="fast"), ValueError, "approximate must be 'none' or 'tanh', got 'fast'"),
    (lambda: MF.gelu(torch.arange(3)), TypeError, "input must be a floating-point.*int64"),
    (lambda: MF.leaky_relu(x83.clone(), -0.1, inplace=True), ValueError, "inplace=True needs negative_slope >= 0"),
    (lambda: MF.softmax(x83, dim=2), IndexError, r"dim must be in \[-2, 1\] for input of shape \(8, 3\), got 2"),
    (lambda: MF.log_softmax(x83.int(), dim=1), TypeError, "input must be a floating-point.*int32"),
    (lambda: MF.nll_loss(x83, torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])), ValueError,
     r"class indices in \[0, 2\] \(C=3\) or ignore_index=-100, got 3"),
    (lambda: MF.nll_loss(x83, labels), ValueError, r"target must have shape \(8,\).*got \(5,\)"),
    (lambda: MF.nll_loss(x835, torch.zeros(8, 3, dtype=torch.long)), ValueError, r"target must have shape \(8, 5\)"),
    (lambda: MF.nll_loss(x83, torch.zeros(8)), TypeError, "target must hold class indices.*float32"),
    (lambda: MF.nll_loss(x83, torch.zeros(8).long(), torch.ones(4)), ValueError, r"weight must have shape \(3,\)"),
    (lambda: MF.nll_loss(x83, torch.zeros(8).long(), torch.ones(3, requires_grad=True)), ValueError,
     "weight must not require grad"),
    (lambda: MF.nll_loss(x83, torch.zeros(8).long(), reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: mnn.NLLLoss(ignore_index=0)(x83, torch.full((8,), 5)), ValueError, "or ignore_index=0, got 5"),
]


@pytest.mark.parametrize("call,error,message", NEW_LAYER_BAD_CALLS, ids=[m for _, _, m in NEW_LAYER_BAD_CALLS])
def test_new_layers_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
