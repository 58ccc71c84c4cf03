"""Two facts from the lecture, as code: row and column notation agree, and per-sample accumulation of gradients
equals one vectorised backward over the batch.

    python -m lecture.notation
"""
import torch

import manual_bp.functional as MF
from lecture.command_line import parser_for


def neuron_by_neuron(X, W_lecture, b):
    """z_j = w_jᵀx + b_j for every sample x (a row of X) and neuron j (w_j: column j of W_lecture, shape (in, out))."""
    Z = torch.empty(X.shape[0], W_lecture.shape[1], dtype=X.dtype)
    for i, x in enumerate(X):
        for j in range(W_lecture.shape[1]):
            Z[i, j] = W_lecture[:, j] @ x + b[j]
    return Z


def design_matrix_form(X, W_lecture, b):
    """Z = X·W + B with the design matrix X (N, in), W (in, out) and B = 1·bᵀ (N, out): the whole batch at once."""
    B = torch.ones(X.shape[0], 1, dtype=X.dtype) @ b[None, :]  # (N, 1) @ (1, out) -> (N, out)
    return X @ W_lecture + B  # (N, in) @ (in, out) + (N, out) -> (N, out)


def manual_linear(X, W_lecture, b):
    """manual_bp's Linear keeps torch's layout W = W_lectureᵀ of shape (out, in)."""
    return MF.linear(X, W_lecture.t(), b)


def accumulated_gradients(net, loss_fn, X, Y):
    """The lecture's loop: zero the gradients; for each sample, forward and backward (gradients add up); divide by m.

    loss_fn(prediction, target) is the per-sample loss (reduction "sum" over that one sample's outputs).
    Returns {parameter name: gradient / m}.
    """
    net.zero_grad()
    for x, y in zip(X, Y):
        loss_fn(net(x[None]), y[None]).backward()  # each backward adds ∂ℓ_i/∂w into .grad
    return {name: p.grad / len(X) for name, p in net.named_parameters()}


def vectorised_gradients(net, loss_fn_mean, X, Y):
    """One forward and one backward over the whole batch with mean reduction."""
    net.zero_grad()
    loss_fn_mean(net(X), Y).backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def main(argv=None):
    """Both facts on random numbers, in float64: the largest difference between the two sides of each."""
    parser_for(__doc__).parse_args(argv)  # no options: --help, and any argument refused
    generator = torch.Generator().manual_seed(0)
    X, W, b = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in ((5, 3), (3, 4), (4,)))
    rows = (neuron_by_neuron(X, W, b) - design_matrix_form(X, W, b)).abs().max().item()
    layer = (manual_linear(X, W, b) - design_matrix_form(X, W, b)).abs().max().item()
    print(f"z_j = w_jᵀx + b_j neuron by neuron = X·W + B at once: largest difference {rows:.1e}; "
          f"manual_bp's Linear (W in torch's (out, in) layout): {layer:.1e}")
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    Y = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    looped = accumulated_gradients(net, lambda p, y: MF.mse_loss(p, y, reduction="sum") / 2, X, Y)
    batched = vectorised_gradients(net, lambda p, y: MF.mse_loss(p, y, reduction="sum") / 2 / len(X), X, Y)
    largest = max((looped[name] - batched[name]).abs().max().item() for name in looped)
    print(f"per-sample gradients summed, over m = vectorised batch gradient: largest difference {largest:.1e} "
          f"over {len(looped)} parameters")


if __name__ == "__main__":
    main()
