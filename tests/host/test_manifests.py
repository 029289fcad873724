"""make firmware: every board's manifest freezes exactly what the board needs
(host_tools.deploy.board_modules(), the list make flash copies), on top of the
MicroPython board's own manifest. It cannot be built here (no MicroPython
source tree), so the manifest is run with MicroPython's manifest commands stubbed."""

from pathlib import Path

from host_tools import deploy, firmware


def run_manifest(path: Path) -> dict:
    seen: dict = {"include": [], "package": [], "module": [], "freeze": [], "require": []}
    def command(name):
        return lambda *a, **kw: seen[name].append((a, kw))

    cmds = {k: command(k) for k in seen}
    exec(compile(path.read_text(), str(path), "exec"), cmds)
    return seen


def test_every_board_manifest_freezes_exactly_what_the_board_needs():
    needs = [m + ".py" for m in deploy.board_modules()]
    assert set(deploy.FIRMWARE) == set(deploy.MCU_BOARDS)
    for board in deploy.MCU_BOARDS:
        path = deploy.ROOT / "boards" / board / "manifest.py"
        seen = run_manifest(path)
        assert seen["include"] == [((deploy.FIRMWARE[board][3],), {})], board
        assert not seen["freeze"] and not seen["require"] and not seen["module"], board
        [(args, kw)] = seen["package"]
        assert args == ("dialgate",) and sorted(kw["files"]) == needs, board
        base = (path.parent / kw["base_path"] / "dialgate").resolve()
        assert base == deploy.PKG and all((base / f).is_file() for f in kw["files"])
        assert path.read_text() == firmware.manifest_text(board)  # regenerate: --write-manifests


def test_make_firmware_builds_the_port_with_the_manifest(tmp_path, capsys):
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "mpconfig.h").write_text("")
    assert firmware.main(["--board", "esp32s3", "--micropy-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"make -C {tmp_path}/ports/esp32 BOARD=ESP32_GENERIC_S3 "
                       f"FROZEN_MANIFEST={deploy.ROOT}/boards/esp32s3/manifest.py BOARD_VARIANT=SPIRAM_OCT")
    assert firmware.main(["--board", "pico_w"]) == 2  # no MICROPY_DIR: one line, no traceback
    assert capsys.readouterr().err.startswith("make firmware needs MICROPY_DIR=")
