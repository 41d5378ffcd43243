#!/usr/bin/env python3
"""Checks the code's shape (CONVENTIONS.md): no function over 150 lines, no source file over
1,000 lines outside tests, and no import cycle between the modules of one crate.

    python3 scripts/shape.py        # prints what is over a limit; exit 1 if anything is

A function's length is counted from its `fn` line to its closing brace. A module depends on
another when it names it (`crate::a::b`, `super::b`, `use crate::{a, b}`), doc links included;
a module naming one of its ancestors is not a dependency (a child uses its parent's items).
"""

import os
import re
import sys

MAX_FN = 150
MAX_FILE = 1000
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code(line):
    """The line without string and char literals and comments (good enough for braces)."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    i = line.find("//")
    return line[:i] if i >= 0 else line


def long_functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            s = code(lines[j])
            if not started and ";" in s and "{" not in s:
                break
            for ch in s:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if started and depth <= 0:
                break
            j += 1
        if started and j - i + 1 > MAX_FN:
            yield f"{path}:{i + 1}: fn {m.group(1)} is {j - i + 1} lines (at most {MAX_FN})"


def is_test(path):
    parts = path.split(os.sep)
    return "tests" in parts or "benches" in parts or parts[-1] in ("tests.rs", "proptests.rs")


def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)


def cycles(crate, src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(dirpath, f)
                mods[module_path(src, p)] = p
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = open(p, encoding="utf-8").read()
        k = text.find("#[cfg(test)]\nmod tests")
        if k >= 0:
            text = text[:k]
        paths = [tuple(x.split("::")[1:]) for x in re.findall(r"\bcrate((?:::\w+)+)", text)]
        paths += [m[:-1] + tuple(x.split("::")[1:]) for x in re.findall(r"\bsuper((?:::\w+)+)", text)]
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
            paths += [tuple(x.strip().split("::")) for x in group.split(",") if x.strip()]
        for path in paths:
            target = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in mods), None)
            if target is None or target == m or m[: len(target)] == target:
                continue
            edges[m].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(scc)

    for v in mods:
        if v not in index:
            visit(v)
    for scc in found:
        names = sorted("::".join(x) or "crate root" for x in scc)
        yield f"crates/{crate}: modules import each other in a cycle: {', '.join(names)}"


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    os.chdir(root)
    problems = []
    for crate in sorted(os.listdir("crates")):
        base = os.path.join("crates", crate)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if not f.endswith(".rs"):
                    continue
                p = os.path.join(dirpath, f)
                problems += long_functions(p)
                n = sum(1 for _ in open(p, encoding="utf-8"))
                if n > MAX_FILE and not is_test(p):
                    problems.append(f"{p}: {n} lines (at most {MAX_FILE} outside tests)")
        src = os.path.join(base, "src")
        if os.path.isdir(src):
            problems += cycles(crate, src)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} shape problem(s); see CONVENTIONS.md", file=sys.stderr)
        return 1
    print("shape: no function over 150 lines, no file over 1,000 lines, no module cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
