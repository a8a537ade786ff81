#!/usr/bin/env python3
"""Fails if the top-level modules of src/ import each other in a circle.

A module is a file `src/<name>.rs` or a folder `src/<name>/`. Module A uses
module B when any line of A's code (not a comment) names `crate::B`, in a `use`
or a path; doc comments may link anywhere.
Test code is left out: files named `tests.rs` or `*_tests.rs`, folders named
`tests`, and everything from a `#[cfg(test)]` `mod tests` to the end of its
file. Prints the dependency list, then each circle found; exits 1 if any.
"""

import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ROOTS = {"lib.rs", "main.rs"}


def is_test_file(path):
    name = os.path.basename(path)
    return name == "tests.rs" or name.endswith("_tests.rs") or f"{os.sep}tests{os.sep}" in path


def non_test_text(path):
    with open(path, encoding="utf-8") as source:
        text = source.read()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    text = text[: cut.start()] if cut else text
    return re.sub(r"//[^\n]*", "", text)


def modules():
    found = {}
    for entry in sorted(os.listdir(SRC)):
        path = os.path.join(SRC, entry)
        if entry in ROOTS:
            continue
        if entry.endswith(".rs"):
            found[entry[:-3]] = [path]
        elif os.path.isdir(path):
            found[entry] = [
                os.path.join(folder, name)
                for folder, _, names in os.walk(path)
                for name in names
                if name.endswith(".rs")
            ]
    return found


def main():
    mods = modules()
    uses = {}
    for name, files in mods.items():
        targets = set()
        for path in files:
            if is_test_file(path):
                continue
            targets |= set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", non_test_text(path)))
        uses[name] = sorted(t for t in targets if t in mods and t != name)
    for name in sorted(uses):
        print(f"{name:14} -> {', '.join(uses[name]) or '-'}")

    circles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in uses[node]:
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in sorted(uses):
        if name not in state:
            visit(name)
    for circle in circles:
        print("circle: " + " -> ".join(circle))
    if circles:
        return 1
    print(f"no module circle among {len(uses)} modules of src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
