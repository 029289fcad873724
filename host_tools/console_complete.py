"""Tab completion for dialgatectl: commands and their arguments, from the gateway's own `help`.

`help` prints one line per command, `USAGE  SUMMARY` (the usage padded to one
width, then two spaces): `queue retry ID|all`, `log [N]`, `alias add ADDRESS
TARGET...`. Lower-case words of a usage are the command's name or literal
arguments (`all`); upper-case ones are placeholders, completed from the gateway
where it can list them (queue ids, users, aliases, config keys, commands).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "firmware" / "dialgate" / "schema.json"


def parse_help(lines: list[str]) -> dict[str, list[str]]:
    """`help` lines -> {command name: [argument specs]}, e.g. "queue retry": ["ID|all"]."""
    out: dict[str, list[str]] = {}
    for line in lines:
        usage = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        words = usage.split()
        name = []
        for w in words:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", w) or len(name) == 2:
                break
            name.append(w)
        if name:
            out[" ".join(name)] = words[len(name):]
    return out


def config_keys() -> list[str]:
    """Every configuration key (the firmware's schema, beside this checkout)."""
    try:
        return sorted(json.loads(SCHEMA.read_text()))
    except (OSError, ValueError):
        return []


class Completer:
    """`candidates(line)`: the words that may follow `line` (the text before the
    cursor), filtered by the word being typed. `source(kind)` lists what a
    placeholder names: "ID", "NAME", "ADDRESS", "TARGET", "KEY"."""

    def __init__(self, commands: dict[str, list[str]], source: Callable[[str], list[str]] | None = None) -> None:
        self.commands = commands
        self.source = source or (lambda kind: [])
        self.session_words = ["login", "quit"]

    def _names(self, done: list[str], prefix: str) -> list[str]:
        """Completions of a command name after the words `done`."""
        names = list(self.commands) + [w for w in self.session_words if w not in self.commands]
        out = set()
        for n in names:
            parts = n.split()
            if parts[: len(done)] == done and len(parts) > len(done):
                out.add(parts[len(done)])
        return sorted(w for w in out if w.startswith(prefix))

    def _args(self, spec: str) -> list[str]:
        out: list[str] = []
        for alt in spec.strip("[].").split("|"):
            if alt.islower():
                out.append(alt)
                continue
            kind = alt.rstrip(".")
            if kind == "KEY":
                out += config_keys()
            elif kind == "TARGET":
                out += self.source("NAME") + self.source("ADDRESS")
            elif kind in ("ID", "NAME", "ADDRESS"):
                out += self.source(kind)
        return out

    def candidates(self, line: str) -> list[str]:
        words = line.split()
        prefix = ""
        if words and not line.endswith(" "):
            prefix = words.pop()
        out = set(self._names(words, prefix))
        for n in range(min(2, len(words)), 0, -1):
            name = " ".join(words[:n])
            if name in self.commands:
                specs = self.commands[name]
                i = len(words) - n
                if specs and specs[0] == "[COMMAND]":
                    out |= set(self._names(words[n:], prefix))
                elif i < len(specs) or (specs and specs[-1].endswith("...")):
                    spec = specs[min(i, len(specs) - 1)]
                    out |= {w for w in self._args(spec) if w.startswith(prefix)}
                break
        return sorted(out)
