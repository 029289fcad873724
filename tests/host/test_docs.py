"""docs/ stays true to the code: every config key and console command is documented."""

from pathlib import Path

import fwtest
from dialgate import config
from dialgate.app import Gateway

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def test_every_config_key_is_documented():
    text = (DOCS / "config.md").read_text()
    missing = [k for k in config.schema() if f"`{k}`" not in text]
    assert not missing, f"docs/config.md lacks: {missing}"


def test_every_console_command_is_documented():
    text = (DOCS / "console.md").read_text()
    gw = Gateway(fwtest.host_config())
    gw.commands.load()  # every lazy command group too
    missing = [name for name in gw.commands.table if f"`{name}" not in text]
    assert not missing, f"docs/console.md lacks: {missing}"


def test_every_make_target_the_docs_name_exists():
    """`make NAME` in README.md or docs/ is a target of the Makefile (and the
    install targets are documented)."""
    import re

    root = DOCS.parent
    makefile = (root / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = {}
    for f in [root / "README.md", *sorted(DOCS.glob("*.md"))]:
        # in code: `make x ...` inline, or an indented command line
        for t in re.findall(r"(?:`|^    )(?:sudo )?make ([a-z][\w-]*)", f.read_text(), re.M):
            named.setdefault(t, f.name)
    missing = {t: f for t, f in named.items() if t not in targets}
    assert not missing, f"docs name make targets the Makefile lacks: {missing}"
    assert {"install-pi", "uninstall-pi"} <= set(named), named
