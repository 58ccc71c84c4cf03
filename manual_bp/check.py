"""Compare every manual_bp op with its native PyTorch twin: output, every input gradient, gradcheck, gradgradcheck.

    python -m manual_bp.check                 # CPU, and CUDA when present: one line per op; exits 1 on any failure
    python -m manual_bp.check --table         # every row: each dtype, layout and shape, with each tensor's error
    python -m manual_bp.check --device cpu

The ops come from manual_bp.cases, the comparison from manual_bp.testing: what this prints is what the tests assert.
"""
import argparse
import sys

import torch

from manual_bp import cases
from manual_bp.testing import largest_float32_gradient_errors, print_table


def print_summary(results, file=None):
    """One line per op and device: its rows, ok or FAIL, its largest float32 relative gradient error; failures below."""
    file = file or sys.stdout
    largest = largest_float32_gradient_errors(results)
    print(f"{'op':<56} {'device':<7} {'rows':>4}  {'status':<6} largest float32 relative gradient error", file=file)
    for (op, device) in dict.fromkeys((r.op, r.device) for r in results):
        rows = [r for r in results if r.op == op and r.device == device]
        failed = [r for r in rows if not r.ok]
        print(f"{op:<56} {device:<7} {len(rows):>4}  {'FAIL' if failed else 'ok':<6} {largest.get(op, 0.0):.1e}",
              file=file)
        for r in failed:
            print(f"    {r.label} ({str(r.dtype).replace('torch.', '')}): {'; '.join(r.failures)}", file=file)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                        help="all: CPU, and CUDA when present (default)")
    parser.add_argument("--table", action="store_true", help="every row, with each tensor's error, not a line per op")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    results = cases.run_all(devices)
    (print_table if args.table else print_summary)(results)
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
