#!/usr/bin/env python3
"""tandem vs PyTorch on the reference models, side by side in one run.

For each batch size, alternates `bench/torch_models.py` (PyTorch 1.13, one caller thread, its
default intra-op threads) and `tandem bench --model M --batch B --threads T --policies none`
(T threads, one stream each, one BLAS thread per stream), --rounds times, and reports the median
samples/s of each and their ratio. Alternating rounds expose both to the same machine load.

  /usr/bin/python3 bench/nn_vs_torch.py --tandem build/default/apps/tandem/tandem \\
      --model mlp --batch 1,256 --threads 2 --rounds 3 --seconds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_point(model, batch, seconds, blas_threads):
    env = dict(os.environ)
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "torch_models.py"), "--model", model,
                        "--batch", str(batch), "--seconds", str(seconds), "--json", f.name],
                       check=True, capture_output=True, env=env)
        return json.load(open(f.name))[0]["samples_per_s"]


def tandem_point(tandem, model, batch, threads, seconds):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([tandem, "bench", "--device", "cpu", "--model", model, "--batch",
                        str(batch), "--threads", str(threads), "--policies", "none",
                        "--seconds", str(seconds), "--json", f.name],
                       check=True, capture_output=True)
        return json.load(open(f.name))[0]["samples_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--model", default="mlp", choices=["mlp", "encoder"])
    ap.add_argument("--batch", default="1,256")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="tandem threads (default: the cores)")
    ap.add_argument("--torch-blas-threads", type=int, default=0,
                    help="OPENBLAS_NUM_THREADS for PyTorch (0: OpenBLAS's default, all cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"model {args.model}, tandem threads {args.threads}, PyTorch OpenBLAS threads "
          f"{args.torch_blas_threads or 'default'}, {args.rounds} rounds x "
          f"{args.seconds:g} s, {os.cpu_count()} cores, load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| batch | PyTorch samples/s | tandem samples/s | tandem / PyTorch | PyTorch forwards/s "
          "| tandem forwards/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch in (int(b) for b in args.batch.split(",")):
        tp, tt = [], []
        for _ in range(args.rounds):
            tp.append(torch_point(args.model, batch, args.seconds, args.torch_blas_threads))
            tt.append(tandem_point(args.tandem, args.model, batch, args.threads, args.seconds))
        p, t = statistics.median(tp), statistics.median(tt)
        print(f"| {batch} | {p:,.0f} | {t:,.0f} | {t / p:.2f}x | {p / batch:,.0f} | "
              f"{t / batch:,.0f} |")
        sys.stdout.flush()
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
