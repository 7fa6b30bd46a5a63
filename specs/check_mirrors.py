#!/usr/bin/env python3
"""check_mirrors.py — fails when C++ code that a spec mirrors changed without the spec's header.

Each model under specs/ lists, in its header comment, lines of the form
    mirrors <file> <Qualified::function> sha256:<first 16 hex digits>
The hash is over the function's definition (from its signature line to its closing brace), with
trailing whitespace stripped. When the code changes, re-read the model against it, update the
model, then refresh the hashes with --update.

usage: check_mirrors.py [--update] [SPEC.pml ...]   (default: every specs/*.pml)
"""
import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINE = re.compile(r"(mirrors\s+(\S+)\s+(\S+)\s+sha256:)([0-9a-fA-F]+|PENDING)")


def function_text(path: pathlib.Path, name: str) -> str:
    src = path.read_text()
    # A definition: the qualified name at the start of a declarator, followed by '(' and, after
    # the parameter list and qualifiers, a '{' (not a ';').
    pattern = re.compile(r"^[^\n;{}]*\b" + re.escape(name) + r"\s*\(", re.M)
    for m in pattern.finditer(src):
        open_brace = src.find("{", m.end())
        semicolon = src.find(";", m.end())
        if open_brace < 0 or (0 <= semicolon < open_brace and "(" not in src[m.end():semicolon]):
            continue
        depth, i = 0, open_brace
        while i < len(src):
            if src[i] == "{":
                depth += 1
            elif src[i] == "}":
                depth -= 1
                if depth == 0:
                    text = src[m.start():i + 1]
                    return "\n".join(line.rstrip() for line in text.splitlines())
            i += 1
    raise SystemExit(f"check_mirrors: {name} not found in {path}")


def digest(path: str, name: str) -> str:
    return hashlib.sha256(function_text(ROOT / path, name).encode()).hexdigest()[:16]


def main(argv):
    update = "--update" in argv
    specs = [pathlib.Path(a) for a in argv if a != "--update"] or sorted((ROOT / "specs").glob("*.pml"))
    stale = 0
    for spec in specs:
        text = spec.read_text()
        entries = LINE.findall(text)
        if not entries:
            print(f"{spec.name}: no 'mirrors' lines: every model must name the code it mirrors")
            stale += 1
            continue
        for prefix, path, name, recorded in entries:
            actual = digest(path, name)
            if recorded.lower() == actual:
                print(f"{spec.name}: {name} ok")
                continue
            if update:
                text = text.replace(prefix + recorded, prefix + actual)
                print(f"{spec.name}: {name} updated to {actual}")
            else:
                print(f"{spec.name}: {name} in {path} changed (recorded {recorded}, now {actual}); "
                      f"re-read the model against the code, then run specs/check_mirrors.py --update")
                stale += 1
        if update:
            spec.write_text(text)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
