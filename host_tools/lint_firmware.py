"""Lint rules that keep firmware/ runnable on a board.

Default mode (structural, via `ast`):
  * only `compat.py` may test the runtime (`sys.implementation`); only the compat
    family (`compat.py`, `compat_*.py`, which branch on `compat.MICROPYTHON`)
    may catch ImportError or use attributes the unix port lacks;
  * every module imported at module level must import under the MicroPython
    unix port; CPython-only modules (pyserial, dnspython, ...) may be imported
    only lazily, inside functions of compat / link* / modem* modules;
  * no `assert`, no bare `except:`, no type annotations in firmware/;
  * idle unloading's feature registry (`app_unload.FEATURES`) matches the
    import graph: each feature lists exactly the modules only it reaches, and
    each shared module (`app_unload.SHARED`) exactly its module-level importers.

`--typecheck BOARD --stubs DIR`: runs basedpyright over firmware/ against that
board's MicroPython stubs, so a call the board does not have fails lint.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAZY_CPYTHON_OK = ("compat", "link", "modem")  # module-name prefixes


def upy_has(modules: set[str], upy: str) -> dict[str, bool]:
    out = {}
    for m in sorted(modules):
        r = subprocess.run([upy, "-c", f"import {m}"], capture_output=True, timeout=20)
        out[m] = r.returncode == 0
    return out


def upy_attrs(pairs: set[tuple[str, str]], upy: str) -> set[tuple[str, str]]:
    """The (module, attribute) pairs the MicroPython unix port lacks."""
    if not pairs:
        return set()
    prog = f"import sys\nfor m, a in {sorted(pairs)!r}:\n    try:\n        mod = __import__(m)\n        ok = hasattr(mod, a)\n    except ImportError:\n        ok = False\n    print(m, a, int(ok))\n"
    r = subprocess.run([upy, "-c", prog], capture_output=True, text=True, timeout=30)
    missing = set()
    for line in r.stdout.splitlines():
        m, a, ok = line.split()
        if ok == "0":
            missing.add((m, a))
    return missing


def structural(upy: str, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    top_imports: dict[str, list[str]] = {}
    attr_uses: dict[tuple[str, str], list[str]] = {}
    for path in sorted((root / "firmware").rglob("*.py")):
        rel = path.relative_to(root)
        mod = path.stem
        tree = ast.parse(path.read_text(), str(rel))
        allow_lazy = mod.startswith(LAZY_CPYTHON_OK)
        family = mod == "compat" or mod.startswith("compat_")
        src = path.read_text()
        if mod != "compat" and "sys.implementation" in src:
            problems.append(f"{rel}: tests the runtime (sys.implementation); only compat.py may")
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ExceptHandler):
                if node.type is None:
                    problems.append(f"{where}: bare `except:`")
                elif not family and "ImportError" in ast.dump(node.type):
                    problems.append(f"{where}: catches ImportError; feature tests belong in compat.py")
            elif isinstance(node, ast.Assert):
                problems.append(f"{where}: `assert` in firmware (use a real check)")
            elif isinstance(node, (ast.AnnAssign,)) or (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and (node.returns is not None or any(a.annotation is not None for a in node.args.args))
            ):
                problems.append(f"{where}: type annotation in firmware")
        stdlib_names = {a.asname or a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        if not family:
            # os.fsync, os.replace, os.makedirs ...: the board stubs keep CPython's
            # names for these, so ask the unix port itself whether they exist.
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in stdlib_names and node.value.id not in ("compat", "log")):
                    attr_uses.setdefault((node.value.id, node.attr), []).append(f"{rel}:{node.lineno}")
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for n in names:
                top_imports.setdefault(n, []).append(f"{rel}:{node.lineno}")
        # lazy imports outside the permitted modules are checked like top-level ones
        if not allow_lazy:
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        top_imports.setdefault(a.name.split(".")[0], []).append(f"{rel}:{node.lineno}")
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    top_imports.setdefault(node.module.split(".")[0], []).append(f"{rel}:{node.lineno}")
    for m, a in sorted(upy_attrs(set(attr_uses), upy)):
        for where in attr_uses[(m, a)]:
            problems.append(f"{where}: `{m}.{a}` does not exist on MicroPython (put a shim in compat.py)")
    own = {"dialgate"}
    avail = upy_has({m for m in top_imports if m not in own}, upy)
    for m, ok in avail.items():
        if not ok:
            for where in top_imports[m]:
                problems.append(f"{where}: imports `{m}`, which the MicroPython unix port lacks")
    return problems


def _registry(path: Path, name: str):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path.name} has no {name}")


def feature_drift(root: Path = ROOT) -> list[str]:
    """Check `app_unload.FEATURES` against the import graph of firmware/dialgate.

    The core is what `__main__` reaches over every import (module level or in
    a function; the console's command groups, imported by name; fw_graph)
    without entering a feature's modules. What a feature's modules reach and
    neither the core nor another feature does must be on its list; nothing
    on a list may be imported at module level from outside it (the importer
    would keep the old module while the next use loads a second copy), nor be
    on two lists. A module two features reach stays listed by neither (dotstuff,
    smtp_data) or by one, where the other imports it only inside a function
    (compat_relay: a call asks it for the time), which loads it again."""
    from host_tools.fw_graph import graph, reach

    pkg = root / "firmware" / "dialgate"
    edges, top = graph(pkg)
    mods = set(edges)
    features = _registry(pkg / "app_unload.py", "FEATURES")
    listed = {f: set(mods_) for f, (_attr, mods_) in features.items()}
    everything = set().union(*listed.values())
    problems = [f"app_unload.FEATURES[{f!r}]: no module {m}" for f in listed for m in sorted(listed[f] - mods)]

    core = reach(edges, {"__main__"}, everything)
    reached = {f: reach(edges, listed[f], everything - listed[f]) - core for f in listed}
    for f in listed:
        own = reached[f] - set().union(*(reached[g] for g in listed if g != f))
        for m in sorted(listed[f]):
            for g in sorted(g for g in listed if g < f and m in listed[g]):
                problems.append(f"app_unload.FEATURES[{f!r}] lists {m}, and so does {g!r}")
            for holder in sorted(k for k in mods if m in top[k] and k not in listed[f]):
                problems.append(f"app_unload.FEATURES[{f!r}] lists {m}, but {holder} imports it at module "
                                "level and stays: unloading it would load it twice")
        for m in sorted(own - listed[f]):
            problems.append(f"app_unload.FEATURES[{f!r}] misses {m}: only {f} imports it, so it stays after {f} goes")
    return problems


def shared_drift(root: Path = ROOT) -> list[str]:
    """Check `app_unload.SHARED` against the import graph: each shared module's
    importers must be exactly the modules that import it at module level (one
    missing would have it unloaded under a module still using it, so the next
    import loads a second copy), it must not be on a feature's list, and it
    must come before every shared module it imports (one sweep frees both)."""
    from host_tools.fw_graph import graph

    pkg = root / "firmware" / "dialgate"
    edges, top = graph(pkg)
    shared = _registry(pkg / "app_unload.py", "SHARED")
    features = _registry(pkg / "app_unload.py", "FEATURES")
    featured = {m for _attr, mods in features.values() for m in mods}
    order = [name for name, _imp, _held in shared]
    problems = []
    for i, (name, importers, _held) in enumerate(shared):
        if name not in edges:
            problems.append(f"app_unload.SHARED: no module {name}")
            continue
        real = {k for k in top if name in top[k]}
        for m in sorted(real - set(importers)):
            problems.append(f"app_unload.SHARED[{name!r}] misses {m}, which imports it at module level")
        for m in sorted(set(importers) - real):
            problems.append(f"app_unload.SHARED[{name!r}] lists {m}, which does not import it at module level")
        if name in featured:
            problems.append(f"app_unload.SHARED[{name!r}] is also on a feature's list in FEATURES")
        for m in sorted(top[name] & set(order[:i])):
            problems.append(f"app_unload.SHARED[{name!r}] imports {m}, listed before it: list {name} first")
    return problems


def typecheck(board: str, stubs: Path, root: Path = ROOT) -> int:
    exe = shutil.which("basedpyright", path=str(Path(sys.executable).parent)) or shutil.which("basedpyright")
    if not exe:
        print("lint: basedpyright is not installed (make venv)", file=sys.stderr)
        return 2
    build = root / "build"
    build.mkdir(exist_ok=True)
    cfg = {
        "include": [str(root / "firmware")],
        "typeshedPath": str(stubs.resolve()),
        "stubPath": str(stubs.resolve()),
        "extraPaths": [str(root / "firmware")],
        "typeCheckingMode": "basic",
        "pythonPlatform": "Linux",
        "reportMissingModuleSource": False,
        # attributes/calls a board lacks are the point of this check:
        "reportAttributeAccessIssue": "error",
        "reportCallIssue": "error",
        "reportMissingImports": "error",
        # MicroPython-isms the stubs model loosely:
        "reportOptionalMemberAccess": False,
        "reportArgumentType": False,
        "reportIndexIssue": False,
        "reportOperatorIssue": False,
        "reportRedeclaration": False,
        "reportTypedDictNotRequiredAccess": False,
        "reportOptionalSubscript": False,
        "reportReturnType": False,
        "reportAssignmentType": False,
    }
    conf = build / f"pyright-{board}.json"
    conf.write_text(json.dumps(cfg, indent=1))
    r = subprocess.run([exe, "-p", str(conf)], cwd=root)
    return r.returncode


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--typecheck", metavar="BOARD")
    ap.add_argument("--stubs", type=Path)
    ap.add_argument("--root", type=Path, default=ROOT, help="project folder holding firmware/ (tests lint a copy)")
    ap.add_argument("--micropython", default=str(Path(sys.executable).parent / "micropython"))
    a = ap.parse_args()
    if a.typecheck:
        if not a.stubs or not a.stubs.is_dir():
            print(f"lint: stubs for {a.typecheck} not found at {a.stubs} (make venv)", file=sys.stderr)
            return 2
        return typecheck(a.typecheck, a.stubs, a.root)
    problems = structural(a.micropython, a.root) + feature_drift(a.root) + shared_drift(a.root)
    for p in problems:
        print(p)
    if problems:
        print(f"lint: {len(problems)} problem(s) in firmware/", file=sys.stderr)
        return 1
    print("lint: firmware structure ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
