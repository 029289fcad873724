"""The operator's guide stays true to the firmware: every log line it can write
at info/warn/error, and every command `help` prints, is documented."""

import ast
import re
from pathlib import Path

import fwtest
from dialgate.app import Gateway
from host_tools.console_complete import parse_help

ROOT = Path(__file__).resolve().parent.parent.parent
GUIDE = ROOT / "docs" / "operators-guide.md"
LEVELS = {"info": "", "warn": "WARN ", "error": "ERROR ", "exception": "ERROR "}


def _format(node):
    """A log call's first argument -> its format: "x %s" % y -> "x %s", "x " + y -> "x %s"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        left = _format(node.left)
        if left is not None:
            return left if isinstance(node.op, ast.Mod) else left + "%s"
    return None


def log_lines():
    """(module, level, format) of every log.info/warn/error/exception call in firmware/dialgate."""
    out = []
    for path in sorted((ROOT / "firmware" / "dialgate").glob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            f = n.func if isinstance(n, ast.Call) else None
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "log"
                    and f.attr in LEVELS and n.args):
                fmt = _format(n.args[0])
                assert fmt is not None, f"{path.name}:{n.lineno}: a log format the guide test cannot read"
                if f.attr == "exception":
                    fmt += ": %s"  # log.exception(msg, e) writes "msg: <exception>"
                out.append((path.name, f.attr, fmt))
    return out


def test_every_log_line_is_in_the_operators_guide():
    text = GUIDE.read_text()
    lines = log_lines()
    assert len(lines) > 90  # the walk found them all (about 100 calls)
    missing = [f"{m} {lvl}: {LEVELS[lvl]}{fmt}" for m, lvl, fmt in lines if f"`{LEVELS[lvl]}{fmt}`" not in text
               and f"`{fmt}`" not in text]
    assert not missing, "docs/operators-guide.md lacks these log lines:\n" + "\n".join(missing)


def test_every_command_help_prints_is_documented():
    gw = Gateway(fwtest.host_config())
    lines = gw.commands.run(gw, "help")
    assert lines[-1] == "OK"
    names = parse_help(lines[:-1])
    assert len(names) >= 25, names
    for doc in ("console.md", "operators-guide.md"):  # the reference, and the guide's table of every command
        text = (ROOT / "docs" / doc).read_text()
        missing = [n for n in names if not re.search("`" + re.escape(n) + "[ `]", text)]
        assert not missing, f"docs/{doc} lacks: {missing}"
