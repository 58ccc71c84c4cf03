"""Write your own layer: Softplus with a handwritten backward, proven against torch with manual_bp.testing.

    python -m examples.softplus      # prints the check table; exits 1 if any row fails

A = softplus(Z) = log(1 + e^Z);   ∂L/∂Z = ∂L/∂A ⊙ σ(Z)   (σ the logistic sigmoid: d/dz log(1 + e^z) = e^z/(1 + e^z)).
"""
import sys

import torch
import torch.nn.functional as F

from manual_bp.testing import compare_fns, make_tensor, print_table


class SoftplusFunction(torch.autograd.Function):
    """A = log(1 + e^Z);   ∂L/∂Z = ∂L/∂A ⊙ σ(Z)."""

    generate_vmap_rule = True  # forward + setup_context, no ctx in forward: torch.func.vmap / jacrev work

    @staticmethod
    def forward(input):
        # NOTE: e^z overflows float32 for z > 88; max(z, 0) + log(1 + e^(−|z|)) is the same value and never does
        return input.clamp(min=0) + torch.log1p(torch.exp(-input.abs()))

    @staticmethod
    def setup_context(ctx, inputs, output):
        (input,) = inputs
        ctx.save_for_backward(input)  # save only what backward reads: σ(z) needs z

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        # built from differentiable ops, so double backward (gradgradcheck) works too
        return grad_output * torch.sigmoid(input)  # ∂L/∂Z = ∂L/∂A ⊙ σ(Z)


def softplus(input):
    """The functional alias, like torch.nn.functional.softplus (beta=1)."""
    return SoftplusFunction.apply(input)


class Softplus(torch.nn.Module):
    """The layer, to place in a torch.nn.Sequential like any other."""

    def forward(self, input):
        return softplus(input)


def prove(fn, reference=F.softplus, shapes=((1,), (8, 5), (3, 4, 5))):
    """fn against reference at each shape: float64 with gradcheck and gradgradcheck, then float32."""
    generator = torch.Generator().manual_seed(0)
    results = []
    for shape in shapes:
        for dtype in (torch.float64, torch.float32):
            x = make_tensor(shape, dtype, "cpu", generator, -6.0, 6.0)  # uniform in [−6, 6)
            results.append(compare_fns(fn, reference, (x,), ("input",), f"softplus{list(shape)}", op="softplus",
                                       gradchecks=dtype == torch.float64))
    return results


def main():
    results = prove(softplus)
    print_table(results)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
