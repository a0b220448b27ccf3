#!/usr/bin/env python3
"""Import-cycle check for the Rust crates of the workspace.

Reads every `crate::`, `super::` and `self::` path in a crate's sources (in `use` lines and
inline), resolves each to the deepest module it names, and lifts every reference to the
level where it matters: a reference from module `a::b::c` to module `a::x::y` is an edge
`b -> x` among the children of `a` (their lowest common ancestor). A child naming its
ancestor and a parent naming its child (declaration, re-export) are not edges. A cycle in
any group of siblings is reported with the files that make each edge, and the script exits
1. `--graph` prints the sibling edges too.

Test modules (`tests`, as a file or inline) are left out: a unit test may build its fixture
with a higher layer (compile a snapshot to test the policy) without making the layers
depend on each other in the shipped code.

Usage: tests/import_cycles.py [--graph] CRATE_SRC_DIR...
"""

import os
import re
import sys

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_RE = re.compile(r"\buse\s+(crate|super|self)::\{", re.S)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # String literals could hold `crate::`; drop simple ones.
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    return text


def module_files(src):
    """Maps module path tuples to the file that holds the module's own items."""
    modules = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            full = os.path.join(root, name)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            if path == () and ("lib",) != tuple(rel) and os.path.exists(os.path.join(src, "lib.rs")):
                # main.rs of a crate that also has lib.rs is a separate crate root; skip it.
                if rel == ["main"]:
                    continue
            if rel and rel[0] == "bin":
                continue
            modules[path] = full
    return modules


def inline_modules(modules):
    """Adds `mod name { ... }` blocks (usually `mod tests`) as modules of their file."""
    extra = {}
    for path, full in modules.items():
        with open(full, encoding="utf-8") as f:
            text = strip_comments(f.read())
        for m in re.finditer(r"\bmod\s+([a-z_][a-z0-9_]*)\s*\{", text):
            extra[path + (m.group(1),)] = full
    for k, v in extra.items():
        modules.setdefault(k, v)


def expand_groups(text):
    """Turns `use crate::{a::b, c::{d, e}}` into plain `crate::a::b crate::c::d ...` paths."""
    out = []
    for m in USE_RE.finditer(text):
        start = m.end()
        depth = 1
        i = start
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        body = text[start : i - 1]
        out.extend(m.group(1) + "::" + p for p in flatten(body))
    return out


def flatten(body):
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    result = []
    for part in parts:
        part = re.sub(r"\s+", "", part)
        if not part:
            continue
        if "{" in part:
            head, inner = part.split("{", 1)
            inner = inner.rsplit("}", 1)[0]
            result.extend(head + p for p in flatten(inner))
        else:
            result.append(part.split(" as ")[0])
    return result


def strip_test_modules(text):
    """Removes inline `mod tests { ... }` blocks: their references are the tests' own."""
    out = []
    pos = 0
    for m in re.finditer(r"\bmod\s+tests\s*\{", text):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        out.append(text[pos : m.start()])
        pos = i
    out.append(text[pos:])
    return "".join(out)


def references(path, text):
    """Absolute module paths (tuples of segments) named from module `path`."""
    raw = [m.group(1) + m.group(2) for m in PATH_RE.finditer(text)]
    raw += expand_groups(text)
    for r in raw:
        segs = r.split("::")
        base = list(path)
        head = segs[0]
        rest = segs[1:]
        if head == "crate":
            base = []
        elif head == "super":
            base = base[:-1] if base else base
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
        yield tuple(base) + tuple(s for s in rest if s not in ("*", "self"))


def resolve(target, modules):
    while target and target not in modules:
        target = target[:-1]
    return target


def edges_of(modules):
    edges = {}
    for path, full in modules.items():
        if "tests" in path:
            continue
        with open(full, encoding="utf-8") as f:
            text = strip_test_modules(strip_comments(f.read()))
        for target in references(path, text):
            target = resolve(target, modules)
            # Lowest common ancestor.
            n = 0
            while n < min(len(path), len(target)) and path[n] == target[n]:
                n += 1
            if n == len(path) or n == len(target):
                continue  # ancestor <-> descendant
            parent = path[:n]
            a, b = path[n], target[n]
            edges.setdefault(parent, {}).setdefault((a, b), set()).add(os.path.relpath(full))
    return edges


def cycles(group):
    graph = {}
    for a, b in group:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv):
    show_graph = "--graph" in argv
    dirs = [a for a in argv if not a.startswith("--")]
    if not dirs:
        print(__doc__)
        return 2
    failed = False
    for src in dirs:
        modules = module_files(src)
        inline_modules(modules)
        edges = edges_of(modules)
        found = 0
        for parent in sorted(edges):
            group = edges[parent]
            name = "::".join(("crate",) + parent)
            if show_graph:
                for (a, b), files in sorted(group.items()):
                    print(f"{src}: {name}: {a} -> {b}  ({', '.join(sorted(files))})")
            for comp in cycles(group):
                found += 1
                print(f"{src}: cycle among {name}::{{{', '.join(comp)}}}")
                members = set(comp)
                for (a, b), files in sorted(group.items()):
                    if a in members and b in members:
                        print(f"    {a} -> {b}: {', '.join(sorted(files))}")
        if found:
            failed = True
        else:
            print(f"{src}: no import cycles ({len(modules)} modules)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
