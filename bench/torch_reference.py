#!/usr/bin/env python3
"""PyTorch on the GPU, the reference for `tandem bench --device cuda`: forwards/s of the reference
models (mlp, encoder; same definitions as tests/nn/torch_reference.py), eval mode, no_grad, fp32
(TF32 off unless --tf32), synchronize after every forward — like tandem's bench.

Modes: eager (T Python threads, each with its own torch.cuda.Stream) and graph (one thread,
torch.cuda.CUDAGraph replay with static input/output, batch-1 latency bound).
Prints one line per point; --json writes records in `tandem bench`'s format.

  python3 bench/torch_reference.py --model mlp --batch 1 --threads 1,8 --modes eager,graph
"""
import argparse
import json
import os
import sys
import threading
import time

try:
    import torch
except ImportError as e:
    print(f"SKIP: torch not importable with {sys.executable} ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "nn"))
from torch_reference import build  # noqa: E402


def eager(model, sample, batch, threads, seconds):
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(i):
        stream = torch.cuda.Stream()
        with torch.no_grad(), torch.cuda.stream(stream):
            x = torch.randn((batch,) + sample, device="cuda")
            for _ in range(10):
                model(x)
            stream.synchronize()
            barrier.wait()
            n = 0
            while not stop.is_set():
                model(x)
                stream.synchronize()
                n += 1
            counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def graph(model, sample, batch, seconds):
    x = torch.randn((batch,) + sample, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(s):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        y = model(x)  # noqa: F841 (static output)
    for _ in range(10):
        g.replay()
    torch.cuda.synchronize()
    n = 0
    t0 = time.perf_counter()
    while True:
        g.replay()
        torch.cuda.current_stream().synchronize()
        n += 1
        if n % 16 == 0 and time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp", choices=["mlp", "encoder"])
    ap.add_argument("--batch", default="1")
    ap.add_argument("--threads", default="1,8")
    ap.add_argument("--modes", default="eager,graph")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU for PyTorch")
        sys.exit(77)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    model, sample = build(args.model, 0)
    model = model.cuda()
    prec = "tf32" if args.tf32 else "fp32"
    print(f"pytorch {torch.__version__} on {torch.cuda.get_device_name()}: model {args.model}, "
          f"{prec}, sync per forward, {args.seconds:.1f} s per point")
    records = []
    for batch in (int(b) for b in args.batch.split(",")):
        for mode in args.modes.split(","):
            tlist = [int(t) for t in args.threads.split(",")] if mode == "eager" else [1]
            for threads in tlist:
                ops = (eager(model, sample, batch, threads, args.seconds) if mode == "eager"
                       else graph(model, sample, batch, args.seconds))
                print(f"pytorch-{mode:5s} {prec} batch {batch:5d} threads {threads:2d}: "
                      f"{ops:10.0f} forwards/s {ops * batch:12.0f} samples/s", flush=True)
                records.append({"device": "pytorch-cuda", "model": args.model, "threads": threads,
                                "batch": batch, "policy": f"pytorch-{mode}-{prec}",
                                "ops_per_s": ops, "samples_per_s": ops * batch,
                                "efficiency": 1.0})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
