#!/usr/bin/env python3
"""sample_report.py FILE [--top N] — where the CPU went, from a libtandem_sampler.so profile.

FILE is what bench/sampler.cpp wrote (TANDEM_SAMPLE_OUT): /proc/self/maps, then one call stack
per sample. Prints the functions with the most samples where the CPU was (self) and on the stack
(inclusive), and the share of samples by thread role (executor / client / other, from the
stack's functions). Symbolizes with addr2line (binutils), one call per module.
"""
import argparse
import collections
import subprocess
import sys


def load(path):
    maps, stacks, section = [], [], None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# maps"):
                section = "maps"
                continue
            if line.startswith("# samples"):
                section = "samples"
                print(line.lstrip("# "))
                continue
            if section == "maps":
                parts = line.split(None, 5)
                if len(parts) == 6 and "x" in parts[1]:
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    maps.append((lo, hi, int(parts[2], 16), parts[5]))
            elif section == "samples" and line:
                stacks.append([int(x, 16) for x in line.split()])
    return maps, stacks


def module_of(maps, addr):
    for lo, hi, off, path in maps:
        if lo <= addr < hi:
            return path, addr - lo + off
    return None, addr


def symbolize(maps, stacks):
    wanted = collections.defaultdict(set)  # module -> offsets
    for st in stacks:
        for i, a in enumerate(st):
            # Return addresses point after the call: look up a-1 (the leaf past the signal
            # trampoline is an exact pc, but one byte earlier is inside the same function).
            mod, off = module_of(maps, a - 1 if i > 0 else a)
            if mod:
                wanted[mod].add(off)
    names = {}
    for mod, offs in wanted.items():
        offs = sorted(offs)
        try:
            out = subprocess.run(["addr2line", "-f", "-C", "-e", mod] + [hex(o) for o in offs],
                                 capture_output=True, text=True, check=False).stdout.split("\n")
        except FileNotFoundError:
            sys.exit("addr2line not found (binutils)")
        short = mod.rsplit("/", 1)[-1]
        for k, o in enumerate(offs):
            fn = out[2 * k] if 2 * k < len(out) else "??"
            names[(mod, o)] = fn if fn != "??" else f"?? ({short}+{o:#x})"
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    maps, stacks = load(args.file)
    names = symbolize(maps, stacks)

    def frames(st):
        out = []
        for i, a in enumerate(st):
            mod, off = module_of(maps, a - 1 if i > 0 else a)
            out.append(names.get((mod, off), f"?? {a:#x}") if mod else f"?? {a:#x}")
        # Drop the sampler's own frames and the signal trampoline: the interrupted code follows.
        for i, fn in enumerate(out):
            if "__restore_rt" in fn:
                return out[i + 1:]
        return out[2:]

    self_c, incl_c, roles = collections.Counter(), collections.Counter(), collections.Counter()
    for st in stacks:
        fs = frames(st)
        if not fs:
            continue
        self_c[fs[0]] += 1
        for fn in set(fs):
            incl_c[fn] += 1
        text = " ".join(fs)
        role = ("executor" if "executor_main" in text else
                "client" if ("client" in text or "measure_queue" in text or "submit" in text)
                else "other")
        roles[role] += 1
    n = max(1, sum(roles.values()))
    print("by thread role: " + ", ".join(f"{r} {c} ({100 * c / n:.1f}%)" for r, c in roles.most_common()))
    print(f"\n-- self (where the CPU was), top {args.top}")
    for fn, c in self_c.most_common(args.top):
        print(f"{100 * c / n:6.2f}%  {fn[:150]}")
    print(f"\n-- inclusive (on the stack), top {args.top}")
    for fn, c in incl_c.most_common(args.top):
        print(f"{100 * c / n:6.2f}%  {fn[:150]}")


if __name__ == "__main__":
    main()
