"""make flash: the staged board image is complete and boots under the unix port."""

import json
import subprocess
from pathlib import Path

from gateway import UPY
from host_tools import deploy
from host_tools.pkgs import require


def test_stage_compiles_every_module_and_copies_profile(tmp_path):
    files = deploy.stage("pico_w", None, None, tmp_path)
    remote = {r for _, r in files}
    assert ":main.py" in remote and ":config.json" in remote and ":boards/pico_w.json" in remote
    src = {p.stem for p in (Path(deploy.ROOT) / "firmware" / "dialgate").glob("*.py")} - set(deploy.HOST_ONLY)
    assert {r.rsplit("/", 1)[1][:-4] for r in remote if r.endswith(".mpy")} == src == set(deploy.board_modules())
    assert ":lib/dialgate/schema.json" in remote
    for local, _ in files:
        assert local.exists()


def test_staged_image_imports_under_micropython(tmp_path):
    deploy.stage("pico_w", None, None, tmp_path)
    r = subprocess.run([UPY, "-X", "heapsize=128K", "-c",
                        "import sys; sys.path.insert(0, 'lib'); import dialgate.app; print('ok')"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "ok", r.stderr


def test_dry_run_lists_mpremote_commands(capsys, tmp_path):
    assert deploy.main(["--board", "esp32", "--dry-run", "--lan-tls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " :tls/gateway.pem" in out and " :tls/gateway.key" in out
    assert "mpremote connect PORT fs mkdir :lib" in out
    assert "fs cp" in out and ":lib/dialgate/app.mpy" in out and out.strip().endswith("reset")


def test_flash_makes_a_lan_certificate_on_the_host_and_configures_it(tmp_path):
    """No certificate in the config: one is made on the host (never the CA's key on
    the board), copied as /tls/gateway.pem + .key, named in /config.json, loadable by
    the board's TLS code; the next flash reuses the same CA."""
    require("openssl")
    lan = tmp_path / "lan"
    files = deploy.stage("pico_w", None, None, tmp_path / "img", lan_tls=lan)
    remote = {r: local for local, r in files}
    assert ":tls/gateway.pem" in remote and ":tls/gateway.key" in remote
    assert not [r for local, r in files if "ca." in r or local.name.startswith("ca.")]
    cfg = json.loads((tmp_path / "img" / "config.json").read_text())
    assert cfg["smtp"] == {"tls_cert": "/tls/gateway.pem", "tls_key": "/tls/gateway.key"}
    host_dir = lan / "gw.office.example"  # boards/pico_w.json's hostname
    san = subprocess.run(["openssl", "x509", "-in", str(host_dir / "gateway.pem"), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True).stdout
    assert "DNS:gw.office.example" in san
    code = ("import sys; sys.path.insert(0, 'lib'); from dialgate.compat_tls import tls_server_context; "
            f"print(tls_server_context({str(remote[':tls/gateway.pem'])!r}, {str(remote[':tls/gateway.key'])!r}) "
            "is not None)")
    r = subprocess.run([UPY, "-X", "heapsize=128K", "-c", code], cwd=tmp_path / "img", capture_output=True, text=True,
                       timeout=30)
    assert r.stdout.strip() == "True", r.stdout + r.stderr
    ca = (host_dir / "ca.pem").read_bytes()
    deploy._lan_certificate("pico_w", {}, lan)  # what the next flash does
    assert (host_dir / "ca.pem").read_bytes() == ca


def test_flash_keeps_a_certificate_the_config_names(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"smtp": {"tls_cert": "/tls/office.pem"}}))
    files = deploy.stage("esp32", site, None, tmp_path / "img", lan_tls=tmp_path / "lan")
    assert not [r for _, r in files if r.startswith(":tls/")] and not (tmp_path / "lan").exists()


def test_board_modules_follow_the_import_graph():
    """What a board needs is what `app` reaches: a console group named only in a
    table (app.LAZY_COMMANDS) counts, a CPython-only module does not."""
    mods = deploy.board_modules()
    assert {"app", "users_console", "stats_console", "console_help", "link_ppp", "modem_port"} <= set(mods)
    assert not set(mods) & set(deploy.HOST_ONLY)


def test_check_board_matches_mpy_cross_to_the_board():
    assert deploy.check_board((1, 29, 0), 0x0B06, (6, 3)) == "x64"  # the unix port here
    assert deploy.check_board((1, 24, 1), 6 | 3 << 8 | 4 << 10, (6, 3)) == "armv6m"  # RP2040
    assert deploy.check_board((1, 25, 0), 6 | 3 << 8 | 10 << 10, (6, 3)) == "xtensawin"  # ESP32
    for version, mpy in (((1, 23, 0), 0x306 | 4 << 10), ((1, 19, 1), 0x106)):
        try:
            deploy.check_board(version, mpy, (6, 3))
        except deploy.FlashError as e:
            assert "needs 1.24.0 or newer" in str(e)
        else:
            raise AssertionError(version)


def test_a_board_with_dialgate_frozen_in_gets_no_mpy_but_the_schema(tmp_path):
    """make firmware froze the modules: make flash copies the rest (config_load
    reads /lib/dialgate/schema.json when it runs from .frozen)."""
    remote = {r for _, r in deploy.stage("pico_w", None, None, tmp_path, frozen=True)}
    assert not [r for r in remote if r.endswith(".mpy")]
    assert {":lib/dialgate/schema.json", ":main.py", ":boards/pico_w.json", ":config.json"} <= remote
