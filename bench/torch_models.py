#!/usr/bin/env python3
"""PyTorch side of the inference benchmark: forwards/s of the reference models (mlp, encoder).

Same models as tandem's (tests/nn/torch_reference.py builds them), eval mode, torch.no_grad,
one caller thread, PyTorch's default intra-op threads (printed) unless --threads is given.
Prints one line per batch size and, with --json, writes records in `tandem bench`'s format:
{"device","model","threads","batch","policy","ops_per_s","samples_per_s","efficiency"}.

  /usr/bin/python3 bench/torch_models.py --model mlp --batch 1,256 --seconds 3
"""
import argparse
import json
import os
import sys
import time

try:
    import torch
except ImportError as e:
    print(f"SKIP: torch not importable with {sys.executable} ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "nn"))
from torch_reference import build  # noqa: E402


def measure(model, x, seconds):
    with torch.no_grad():
        for _ in range(10):
            model(x)
        n = 0
        t0 = time.perf_counter()
        while True:
            model(x)
            n += 1
            if n % 8 == 0 and time.perf_counter() - t0 >= seconds:
                break
        return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp", choices=["mlp", "encoder"])
    ap.add_argument("--batch", default="1,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, sample = build(args.model, 0)
    records = []
    print(f"pytorch {torch.__version__}: model {args.model}, intra-op threads "
          f"{torch.get_num_threads()}, 1 caller thread, {args.seconds:.1f} s per point")
    for batch in (int(b) for b in args.batch.split(",")):
        x = torch.randn((batch,) + sample)
        ops = measure(model, x, args.seconds)
        print(f"batch {batch:5d}: {ops:10.0f} forwards/s {ops * batch:12.0f} samples/s")
        sys.stdout.flush()
        records.append({"device": "pytorch-cpu", "model": args.model, "threads": 1,
                        "batch": batch, "policy": "pytorch", "ops_per_s": ops,
                        "samples_per_s": ops * batch, "efficiency": 1.0})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
