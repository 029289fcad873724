"""make firmware: every board's manifest freezes exactly what the board needs
(host_tools.deploy.board_modules(), the list make flash copies), on top of the
MicroPython board's own manifest; the ESP32's ROMFS partition table is sound
and holds the image. Nothing can be built here (no MicroPython source tree),
so the manifests run with MicroPython's manifest commands stubbed and the
build commands are checked in a dry run."""

from pathlib import Path

from host_tools import deploy, firmware


def run_manifest(path: Path, seen: dict | None = None) -> dict:
    """Run a manifest the way MicroPython's makemanifest does: include() of a
    relative path runs that file from the including file's folder; the
    board's own manifest ($(PORT_DIR)/...) is only recorded."""
    seen = seen if seen is not None else {"include": [], "package": [], "module": [], "freeze": [], "require": []}

    def command(name):
        return lambda *a, **kw: seen[name].append((a, kw, path))

    def include(p, **kw):
        seen["include"].append(((p,), kw, path))
        if not p.startswith("$("):
            run_manifest((path.parent / p).resolve(), seen)

    cmds = {k: command(k) for k in seen}
    cmds["include"] = include
    exec(compile(path.read_text(), str(path), "exec"), cmds)
    return seen


def test_every_board_manifest_freezes_exactly_what_the_board_needs():
    needs = [m + ".py" for m in deploy.board_modules()]
    assert set(deploy.FIRMWARE) == set(deploy.MCU_BOARDS)
    for board in deploy.MCU_BOARDS:
        path = deploy.ROOT / "boards" / board / "manifest.py"
        seen = run_manifest(path)
        assert [a for a, _kw, _p in seen["include"]] == [(deploy.FIRMWARE[board][3],), ("../dialgate_manifest.py",)]
        assert not seen["freeze"] and not seen["require"] and not seen["module"], board
        [(args, kw, where)] = seen["package"]
        assert args == ("dialgate",) and sorted(kw["files"]) == needs, board
        base = (where.parent / kw["base_path"] / "dialgate").resolve()
        assert base == deploy.PKG and all((base / f).is_file() for f in kw["files"])
        assert path.read_text() == firmware.manifest_text(board)  # regenerate: --write-manifests
    assert firmware.SHARED.read_text() == firmware.shared_manifest_text()


def test_make_firmware_builds_the_port_with_the_manifest(tmp_path, capsys):
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "mpconfig.h").write_text("")
    assert firmware.main(["--board", "esp32s3", "--micropy-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"make -C {tmp_path}/ports/esp32 BOARD=ESP32_GENERIC_S3 "
                       f"FROZEN_MANIFEST={deploy.ROOT}/boards/esp32s3/manifest.py BOARD_VARIANT=SPIRAM_OCT")
    assert firmware.main(["--board", "pico_w"]) == 2  # no MICROPY_DIR: one line, no traceback
    assert capsys.readouterr().err.startswith("make firmware needs MICROPY_DIR=")
    assert firmware.main(["--board", "pico_w", "--romfs", "--micropy-dir", str(tmp_path)]) == 2
    assert "ESP32 boards" in capsys.readouterr().err


def test_the_esp32_romfs_partition_table_is_sound():
    rows = firmware.partitions()
    names = [r[0] for r in rows]
    assert names == ["nvs", "phy_init", "factory", "romfs", "vfs"]
    end = 0x9000  # after the bootloader and the partition table at 0x8000
    for name, ptype, _sub, off, size in rows:
        assert off >= end, f"{name} overlaps the one before it"
        assert off % (0x10000 if ptype == "app" else 0x1000) == 0 and size % 0x1000 == 0, name
        end = off + size
    assert end <= 4 * 1024 * 1024  # a 4 MiB flash, the ESP32's usual
    romfs = rows[names.index("romfs")]
    assert romfs[1:3] == ("data", "0x8f") and int(romfs[2], 0) == firmware.ROMFS_SUBTYPE
    assert rows[names.index("factory")][4] >= 0x1A0000  # the stock ESP32_GENERIC image (~1.6 MiB) fits


def test_make_firmware_romfs_builds_a_board_with_the_partition_and_an_image_that_fits(tmp_path, capsys, monkeypatch):
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "mpconfig.h").write_text("")
    stock = tmp_path / "ports" / "esp32" / "boards" / "ESP32_GENERIC"
    stock.mkdir(parents=True)
    (stock / "mpconfigboard.cmake").write_text("")
    (stock / "mpconfigboard.h").write_text("")
    monkeypatch.setattr(firmware, "BUILD", tmp_path / "build")
    assert firmware.main(["--board", "esp32", "--romfs", "--micropy-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    bdir = tmp_path / "build" / "esp32" / "DIALGATE_ESP32_GENERIC"
    assert out[-1] == f"make -C {tmp_path}/ports/esp32 BOARD_DIR={bdir}"
    assert f'include("{stock}/mpconfigboard.cmake")' in (bdir / "mpconfigboard.cmake").read_text()
    assert f'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="{firmware.ROMFS_CSV}"' in (bdir / "sdkconfig.romfs").read_text()
    assert "MICROPY_VFS_ROM (1)" in (bdir / "mpconfigboard.h").read_text()
    img = tmp_path / "build" / "esp32" / "dialgate-esp32.romfs"
    room = [r[4] for r in firmware.partitions() if r[0] == "romfs"][0]
    assert 100_000 < img.stat().st_size <= room, img.stat().st_size  # every module, and it fits
    assert img.read_bytes()[:3] == b"\xd2\xcd\x31"  # the ROMFS header mpremote writes
    print(f"ROMFS image {img.stat().st_size} octets in a {room}-octet partition")
