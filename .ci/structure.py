#!/usr/bin/env python3
"""Structure figures for src/ (issue 16): production lines per file and the module import graph.

    python3 .ci/structure.py            # report: largest files, import cycles
    python3 .ci/structure.py --check    # exit 1 on an import cycle between top-level modules
                                        # or a production file over MAX_LINES not allow-listed
                                        # (run by .ci/run)

Production lines: a file's lines minus its `#[cfg(test)]` items; `tests.rs`, `tests_*.rs` and
`src/fuzzing*` are test support. The import graph takes every `crate::a::…` path in production
code (comments dropped) as an edge from the file's top-level module to `a`; `src/lib.rs`,
`src/main.rs` and `src/cli/` (the binary's commands, at the top by design) are left out.
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_LINES = 600
# Files allowed over MAX_LINES, with the reason.
ALLOWED = {
    "problem.rs": "one cohesive table: every refusal's status, code and title in one exhaustive match",
}


def is_test_support(rel):
    base = os.path.basename(rel)
    return base == "tests.rs" or base.startswith("tests_") or rel.startswith("fuzzing")


def strip_test_items(text):
    """Drop `#[cfg(test)]` items (a `mod x;` line or a braced block)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            j, depth, started = i + 1, 0, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                started = started or "{" in lines[j]
                if (started and depth <= 0) or (not started and lines[j].rstrip().endswith(";")):
                    break
                j += 1
            i = j + 1
            continue
        out.append(lines[i])
        i += 1
    return out


def top_module(rel):
    first = rel[:-3].split("/")[0]
    return None if first in ("lib", "main", "cli") or rel.startswith("cli/") else first


def use_targets(code):
    code = re.sub(r"//.*", "", code)
    found = set()
    for m in re.finditer(r"crate::\{", code):  # use crate::{a::b, c, d::{e, f}};
        depth, k = 1, m.end()
        while k < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[k], 0)
            k += 1
        inner, depth, part = code[m.end():k - 1], 0, ""
        for ch in inner + ",":
            if ch == "," and depth == 0:
                name = re.match(r"\s*(\w+)", part)
                if name:
                    found.add(name.group(1))
                part = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            part += ch
    for m in re.finditer(r"crate::(\w+)", code):
        found.add(m.group(1))
    return found


def scan():
    files, graph = [], {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            text = open(path, encoding="utf-8").read()
            prod = strip_test_items(text)
            files.append((len(prod), len(text.split("\n")), rel))
            mod = top_module(rel)
            if mod is None or is_test_support(rel):
                continue
            graph.setdefault(mod, set()).update(t for t in use_targets("\n".join(prod)) if t != mod)
    for mod in graph:
        graph[mod] &= set(graph)
    return files, graph


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    check = "--check" in sys.argv
    files, graph = scan()
    prod = [f for f in files if not is_test_support(f[2])]
    total = sum(f[0] for f in prod)
    print(f"production: {total} lines in {len(prod)} files; "
          f"test support in src/: {sum(f[1] for f in files if is_test_support(f[2]))} lines")
    print(f"largest production files (limit {MAX_LINES}):")
    for lines, _, rel in sorted(prod, reverse=True)[:12]:
        note = f"  (allowed: {ALLOWED[rel]})" if rel in ALLOWED else ""
        print(f"  {lines:5}  src/{rel}{note}")
    over = [(n, rel) for n, _, rel in prod if n > MAX_LINES and rel not in ALLOWED]
    loops = cycles(graph)
    print(f"top-level modules: {len(graph)}, import edges: {sum(len(v) for v in graph.values())}, "
          f"cycles: {len(loops)}")
    for loop in loops:
        print("  cycle:", " ".join(loop))
        for mod in loop:
            print(f"    {mod} -> {', '.join(sorted(graph[mod] & set(loop)))}")
    if check and (over or loops):
        for n, rel in over:
            print(f"error: src/{rel} has {n} production lines (limit {MAX_LINES})")
        if loops:
            print("error: import cycle between top-level modules")
        sys.exit(1)


if __name__ == "__main__":
    main()
