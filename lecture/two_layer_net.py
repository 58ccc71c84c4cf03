"""The lecture's PyTorch example: a two-layer ReLU network fitted to random data by manual gradient descent.

N = 64, D_in = 1000, H = 100, D_out = 10; hidden ReLU by clamp; sum-of-squares loss; learning rate 1e-6;
500 steps, gradients zeroed after each update. Run with native ops (the slide's code) or manual_bp Functions.

    python -m lecture.two_layer_net
"""
import torch

import manual_bp.functional as MF
from lecture.command_line import parser_for

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LEARNING_RATE, STEPS = 1e-6, 500


def train(backend, seed=0, steps=STEPS, dtype=torch.float32):
    """The loss at every step, for backend "native" (x.mm(w1).clamp(min=0).mm(w2)) or "manual" (manual_bp)."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, D_IN, generator=generator, dtype=dtype), torch.randn(N, D_OUT, generator=generator, dtype=dtype)
    w1 = torch.randn(D_IN, H, generator=generator, dtype=dtype).requires_grad_()  # the slide's layout (in, out)
    w2 = torch.randn(H, D_OUT, generator=generator, dtype=dtype).requires_grad_()
    losses = []
    for _ in range(steps):
        if backend == "native":
            y_pred = x.mm(w1).clamp(min=0).mm(w2)
            loss = (y_pred - y).pow(2).sum()
        else:
            hidden = MF.relu(MF.linear(x, w1.t()))  # manual_bp takes W = w1ᵀ (out, in): Z = X·w1
            loss = MF.mse_loss(MF.linear(hidden, w2.t()), y, reduction="sum")
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= LEARNING_RATE * w1.grad
            w2 -= LEARNING_RATE * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return losses


def largest_relative_difference(native, manual):
    return max(abs(m - n) / abs(n) for n, m in zip(native, manual))


def main(argv=None):
    parser_for(__doc__).parse_args(argv)  # no options: --help, and any argument refused
    native, manual = train("native"), train("manual")
    for step in (0, 99, 199, 299, 399, 499):
        print(f"step {step + 1:3d}: native loss {native[step]:14.6f}   manual loss {manual[step]:14.6f}")
    # NOTE: float32: the loss falls by 12 orders of magnitude, so the last steps' losses (~1e-5) carry the rounding
    # of every earlier step; in float64 the two agree to 1e-9 (tests/test_lecture.py)
    print(f"manual = native to {largest_relative_difference(native[:100], manual[:100]):.1e} (relative, first 100 "
          f"steps) and {largest_relative_difference(native, manual):.1e} (all {len(native)} steps, float32); "
          f"loss fell from {native[0]:.3g} to {native[-1]:.3g}")


if __name__ == "__main__":
    main()
