#!/usr/bin/env python3
"""sample_report.py FILE [--top N] [--by-role] — a libtandem_sampler.so profile, aggregated.

FILE is what bench/sampler.cpp wrote (TANDEM_SAMPLE_OUT): /proc/self/maps, then one call stack
per sample (thread id first). Prints the functions with the most samples at the top of the stack
(self: where the CPU was in cpu mode, where the thread was in wall mode) and anywhere on it
(inclusive), and the share of samples by thread role: a thread is an executor when any of its
stacks passes through Scheduler::executor_main, a client when one passes through the bench's
client code, else other. --by-role repeats the two lists for each role. Symbolizes with
addr2line (binutils), one call per module.
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
                tid, _, rest = line.partition(":")
                stacks.append((int(tid), [int(x, 16) for x in rest.split()]))
    return maps, stacks


def module_of(maps, addr):
    for lo, hi, off, path in maps:
        if lo <= addr < hi:
            return path, addr - lo + off
    return None, addr


def symbolize(maps, stacks):
    wanted = collections.defaultdict(set)  # module -> offsets
    for _, st in stacks:
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
    ap.add_argument("--by-role", action="store_true", help="the lists for each thread role too")
    ap.add_argument("--callers", metavar="NAME", action="append", default=[],
                    help="also: who calls the functions whose name contains NAME, per role, "
                         "up to 3 frames up (repeatable)")
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

    framed = [(tid, frames(st)) for tid, st in stacks]
    framed = [(tid, fs) for tid, fs in framed if fs]
    role_of = {}
    for tid, fs in framed:
        text = " ".join(fs)
        if "executor_main" in text:
            role_of[tid] = "executor"
        elif role_of.get(tid) != "executor" and ("_client" in text or "measure_queue" in text
                                                 or "run_clients" in text):
            role_of[tid] = "client"
    by_role = collections.defaultdict(list)
    for tid, fs in framed:
        by_role[role_of.get(tid, "other")].append(fs)
    n = max(1, len(framed))
    threads = collections.Counter(role_of.get(tid, "other") for tid in {t for t, _ in framed})
    print("by thread role: " + ", ".join(
        f"{r} {len(v)} samples ({100 * len(v) / n:.1f}%, {threads[r]} threads)"
        for r, v in sorted(by_role.items(), key=lambda kv: -len(kv[1]))))

    def report(title, stacks_of):
        total = max(1, len(stacks_of))
        self_c, incl_c = collections.Counter(), collections.Counter()
        for fs in stacks_of:
            self_c[fs[0]] += 1
            for fn in set(fs):
                incl_c[fn] += 1
        print(f"\n-- {title}: self (top of the stack), top {args.top}, % of {total} samples")
        for fn, c in self_c.most_common(args.top):
            print(f"{100 * c / total:6.2f}%  {fn[:150]}")
        print(f"\n-- {title}: inclusive (on the stack), top {args.top}")
        for fn, c in incl_c.most_common(args.top):
            print(f"{100 * c / total:6.2f}%  {fn[:150]}")

    report("all threads", [fs for _, fs in framed])
    for name in args.callers:
        for role in sorted(by_role):
            chains = collections.Counter()
            hits = 0
            for fs in by_role[role]:
                for i, fn in enumerate(fs):
                    if name in fn:
                        hits += 1
                        chains[" <- ".join(f[:70] for f in fs[i + 1:i + 4])] += 1
                        break
            if not hits:
                continue
            print(f"\n-- {role}: callers of *{name}* ({hits} of {len(by_role[role])} samples)")
            for chain, c in chains.most_common(args.top):
                print(f"{100 * c / hits:6.2f}%  {chain}")
    if args.by_role:
        for role in sorted(by_role):
            report(role, by_role[role])


if __name__ == "__main__":
    main()
