"""make lint catches what would break a board: planted violations in a copy of firmware/."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import ROOT

STUBS = ROOT / ".venv" / "stubs" / "rp2"


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "firmware", tmp_path / "firmware", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def lint(tree: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host_tools.lint_firmware", "--root", str(tree), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_clean_tree_passes(tree):
    r = lint(tree)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("code,message", [
    ("import sys\nX = sys.implementation.name\n", "tests the runtime"),
    ("try:\n    import serial\nexcept ImportError:\n    serial = None\n", "catches ImportError"),
    ("import threading\n", "imports `threading`, which the MicroPython unix port lacks"),
    ("import os\ndef f(fd):\n    os.fsync(fd)\n", "`os.fsync` does not exist on MicroPython"),
    ("def f(x):\n    assert x\n", "`assert` in firmware"),
    ("def f(x: int) -> int:\n    return x\n", "type annotation"),
    ("def f():\n    try:\n        pass\n    except:\n        pass\n", "bare `except:`"),
])
def test_structural_rules_catch_violations(tree, code, message):
    (tree / "firmware" / "dialgate" / "planted.py").write_text(code)
    r = lint(tree)
    assert r.returncode == 1 and message in r.stdout, r.stdout + r.stderr


def test_typecheck_catches_a_call_the_board_lacks(tree):
    if not STUBS.is_dir():
        pytest.fail("board stubs missing: run make venv")
    (tree / "firmware" / "dialgate" / "planted.py").write_text(
        "import time\nimport machine\n\ndef f():\n    time.monotonic()\n    machine.UART(1).frobnicate()\n")
    r = lint(tree, "--typecheck", "rp2", "--stubs", str(STUBS))
    assert r.returncode != 0
    assert '"monotonic" is not a known attribute of module "time"' in r.stdout, r.stdout
    assert 'Cannot access attribute "frobnicate" for class "UART"' in r.stdout, r.stdout


def _edit(tree: Path, name: str, old: str, new: str) -> None:
    p = tree / "firmware" / "dialgate" / name
    src = p.read_text()
    assert old in src, old
    p.write_text(src.replace(old, new, 1))


@pytest.mark.parametrize("name,old,new,message", [
    # the drift issue 15 found: smtp_addr only smtp_server imports, so the smtp feature owns it
    ("app_unload.py", '"smtp_auth", "smtp_addr")', '"smtp_auth")',
     "FEATURES['smtp'] misses smtp_addr: only smtp imports it"),
    # smtp_data is also imported by the call's POP3 client: shared, so no feature may unload it
    ("app_unload.py", '"smtp_auth", "smtp_addr")', '"smtp_auth", "smtp_addr", "smtp_data")',
     "FEATURES['smtp'] lists smtp_data, but multidrop imports it at module level"),
    # a resident module keeping a module-level reference to a feature's module
    ("relay.py", "from . import compat, log\n", "from . import compat, log\nfrom . import bounce\n",
     "FEATURES['relay_run'] lists bounce, but relay imports it at module level"),
    ("app_unload.py", '"pop3_service", "pop3_server")', '"pop3_service", "pop3_server", "pop3_gone")',
     "FEATURES['pop3']: no module pop3_gone"),
    # a shared module's importers: one forgotten would have it unloaded under a module still using it
    ("app_unload.py", '("smtp_data", ("multidrop", "smtp_server"), ())', '("smtp_data", ("smtp_server",), ())',
     "SHARED['smtp_data'] misses multidrop, which imports it at module level"),
    # an import run at module import, under `if MICROPYTHON:`, counts as module level
    ("app_unload.py", '("compat_tls", ("compat_relay",), ())', '("compat_tls", (), ())',
     "SHARED['compat_tls'] misses compat_relay, which imports it at module level"),
    # a sweep frees a module before the ones it imports
    ("app_unload.py", '    ("smtp_data", ("multidrop"', '    ("limits", (), ()),\n    ("smtp_data", ("multidrop"',
     "SHARED['auth'] imports limits, listed before it: list auth first"),
])
def test_feature_registry_drift_fails_lint(tree, name, old, new, message):
    _edit(tree, name, old, new)
    r = lint(tree)
    assert r.returncode == 1 and message in r.stdout, r.stdout + r.stderr
