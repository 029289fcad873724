"""The import graph of firmware/dialgate, read from the source (ast): one
owner for what `make lint` (the feature registry's drift), `make flash`
(what a board needs) and `make bench` (each module's own heap) all ask.

An edge m -> n: m imports n (`from . import n`, `from .n import x`,
`from dialgate.n import x`), at module level or inside a function, or names
it as a console command group (`add_lazy("word", "n")`, or a table of
"word": "n" such as app.LAZY_COMMANDS, which the console imports by name), or
imports it by its whole name (`__import__("dialgate.n", ...)`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "firmware" / "dialgate"


def _named(node: ast.AST, mods: set[str]) -> set[str]:
    """The firmware modules one import statement names."""
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level == 1:
        if node.module is None:
            return {a.name for a in node.names} & mods
        return {node.module.split(".")[0]} & mods
    parts = (node.module or "").split(".")
    if node.level == 0 and parts[0] == "dialgate":
        return ({parts[1]} if len(parts) > 1 else {a.name for a in node.names}) & mods
    return set()


def _by_name(node: ast.AST, mods: set[str]) -> set[str]:
    """Modules named as strings for an import by name: add_lazy("w", "m"), {"w": "m", ...}
    and __import__("dialgate.m", ...)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" and node.args:
        a = node.args[0]
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("dialgate."):
            return {a.value[len("dialgate."):]} & mods
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "add_lazy":
        if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in mods:
            return {node.args[1].value}
    if isinstance(node, ast.Dict) and node.values and all(
            isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value in mods for v in node.values):
        return {v.value for v in node.values}  # type: ignore[union-attr]
    return set()


def _run_at_import(body: list[ast.stmt]):
    """The statements of a module body that run when it is imported: those of
    its `if`/`try`/`with` blocks too (`if MICROPYTHON: from .x import y`),
    not those of its functions or classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _run_at_import(getattr(node, field, []))
        for h in getattr(node, "handlers", []):
            yield from _run_at_import(h.body)


def graph(pkg: Path = PKG) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(every edge, the edges of imports run at module import only), module -> modules."""
    mods = {p.stem for p in pkg.glob("*.py")}
    every: dict[str, set[str]] = {m: set() for m in mods}
    top: dict[str, set[str]] = {m: set() for m in mods}
    for m in mods:
        tree = ast.parse((pkg / f"{m}.py").read_text(), f"{m}.py")
        for node in ast.walk(tree):
            every[m] |= _named(node, mods) | _by_name(node, mods)
        for node in _run_at_import(tree.body):
            top[m] |= _named(node, mods)
        every[m].discard(m)
    return every, top


def reach(edges: dict[str, set[str]], roots: set[str], stop: set[str] = frozenset()) -> set[str]:
    """What `roots` reach over `edges` without entering `stop`."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen or m in stop or m not in edges:
            continue
        seen.add(m)
        todo += edges[m]
    return seen
