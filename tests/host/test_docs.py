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
