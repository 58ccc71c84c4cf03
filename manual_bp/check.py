"""Compare every manual_bp op with its native PyTorch twin: output, every input gradient, gradcheck, gradgradcheck.

    python -m manual_bp.check            # CPU, and CUDA when present; exits 1 on any failure
    python -m manual_bp.check --device cpu

The ops come from manual_bp.cases, the comparison from manual_bp.testing: what this prints is what the tests assert.
"""
import argparse
import sys

import torch

from manual_bp import cases
from manual_bp.testing import largest_float32_gradient_errors, print_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                        help="all: CPU, and CUDA when present (default)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    results = cases.run_all(devices)
    print_table(results)
    print("\nlargest float32 relative gradient error per op:")
    for op, error in largest_float32_gradient_errors(results).items():
        print(f"  {op:<40} {error:.2e}")
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
