#!/usr/bin/env python3
"""Numerics check of tandem's reference models against PyTorch.

For each model (mlp, encoder) and batch size: build the model in PyTorch from a seed, randomize
every parameter (LayerNorm included), export its state_dict() and a random input to safetensors
(written here with struct + json + numpy: the safetensors package is not needed), run
`tandem run`, read `output`, and compare with PyTorch's forward: max abs error <= --tolerance
(1e-4 by default, float32 on CPU).

Exit codes: 0 all compared within tolerance; 1 a mismatch or a failed run; 77 skipped (torch or
numpy not importable: run it with a python3 that has PyTorch, e.g. Debian's python3-torch).

  /usr/bin/python3 tests/nn/torch_reference.py --tandem build/default/apps/tandem/tandem
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: torch/numpy not importable with {sys.executable} ({e}); install Debian's "
          "python3-torch or point TANDEM_TORCH_PYTHON at a python3 that has it")
    sys.exit(SKIP)


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy float32 array. Format: u64 LE header length, JSON, data."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype="<f4")
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
    return out


def build(model, seed):
    torch.manual_seed(seed)
    if model == "mlp":
        m = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 512))
        sample = (512,)
    else:
        layer = torch.nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024,
                                                 dropout=0.0, batch_first=True)
        m = torch.nn.TransformerEncoder(layer, num_layers=2)
        sample = (32, 256)
    # TransformerEncoder deep-copies one layer, and LayerNorm starts at 1/0: randomize every
    # parameter so that each weight is really exercised.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif p.dim() > 1:
                bound = 1.0 / (p.shape[1] ** 0.5)
                p.uniform_(-bound, bound)
            else:
                p.uniform_(-0.1, 0.1)
    return m.eval(), sample


def check(tandem, model, batch, seed, tolerance, workdir, device):
    m, sample = build(model, seed)
    torch.manual_seed(seed + 1000 + batch)
    x = torch.randn((batch,) + sample)
    with torch.no_grad():
        expected = m(x).numpy()
    weights = os.path.join(workdir, f"{model}_weights.safetensors")
    inp = os.path.join(workdir, f"{model}_b{batch}_input.safetensors")
    out = os.path.join(workdir, f"{model}_b{batch}_output.safetensors")
    write_safetensors(weights, {k: v.numpy() for k, v in m.state_dict().items()},
                      {"format": "pt"})
    write_safetensors(inp, {"input": x.numpy()})
    cmd = [tandem, "run", "--model", model, "--weights", weights, "--input", inp,
           "--output", out]
    if device:
        cmd += ["--device", device]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {model} batch {batch}: `{' '.join(cmd)}` exited {r.returncode}: "
              f"{r.stderr.strip()}")
        return False
    got = read_safetensors(out)["output"]
    if got.shape != expected.shape:
        print(f"FAIL {model} batch {batch}: output shape {got.shape}, expected {expected.shape}")
        return False
    err = float(np.max(np.abs(got - expected)))
    ok = err <= tolerance
    print(f"{'ok  ' if ok else 'FAIL'} {model} batch {batch}: max abs error {err:.3g} "
          f"(tolerance {tolerance:g}, |output| max {float(np.max(np.abs(expected))):.3g})")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tandem", required=True, help="path of the tandem executable")
    ap.add_argument("--models", default="mlp,encoder")
    ap.add_argument("--batches", default="1,3,17")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--device", default="", help="tandem device (default: tandem's default)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, numpy {np.__version__}, seed {args.seed}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="tandem-torch-") as workdir:
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                ok &= check(args.tandem, model, batch, args.seed, args.tolerance, workdir,
                            args.device)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
