"""`make run`: the whole system on one host with nothing attached.

Starts three processes, wired as the `host` board profile expects:

* the emulated ISP (host_tools/isp_emulator.py) on 127.0.0.1:2600: the office's
  smarthost (relays for its dial-up customer's line, or after AUTH office / office-secret), holding mail for office.test until ETRN
  (it starts with two demo messages held for postmaster@office.test); with
  `--pop3` it is a multidrop ISP instead: the office's mail goes into its POP3
  mailbox on 127.0.0.1:2110 (the demo messages too), which every call collects;
* the emulated modem (host_tools/modem_emulator.py): serial side 127.0.0.1:2700,
  33,600 bps line; while a call is up it carries 127.0.0.1:2526 -> ISP:2600 and
  ISP-side 127.0.0.1:2625 -> gateway SMTP 127.0.0.1:2525;
* the gateway under CPython with configs/host.json, or with `--upy HEAP` under
  the MicroPython unix port at that heap, from .mpy files as a board runs it
  (with a board's 1024-octet buffers).

Unless configs/host.json names a certificate, the gateway offers STARTTLS and STLS
with a LAN certificate for gw.office.test, localhost and 127.0.0.1, signed by a
local CA; both are made once in run/tls/ (host_tools/lan_tls.py): trust
run/tls/ca.pem in a client to verify it.

Prints what listens where; Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stops
everything cleanly. Each process runs in a process group of its own, so the
terminal's Ctrl-C reaches only this script, which stops the gateway first
through its console (`shutdown`, as an admin stops a board; it hangs up while
the modem is still there), then the others; should this script die without
that, the kernel sends each SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lan_certificate(cfg: dict, tls_dir: Path) -> str:
    """Point smtp.tls_cert/tls_key at a LAN certificate in `tls_dir` (made on
    first use) unless the config names one; returns the line to print."""
    smtp = cfg.setdefault("smtp", {})
    if smtp.get("tls_cert"):
        return ""
    from host_tools import lan_tls

    profile = json.loads((ROOT / "boards" / "host.json").read_text())
    host = cfg.get("hostname", profile["hostname"])
    cert, key, ca = lan_tls.ensure(tls_dir, [host, "localhost", "127.0.0.1"], cfg.get("domains", profile["domains"]),
                                   cfg.get("lan", profile["lan"]))
    smtp["tls_cert"], smtp["tls_key"] = str(cert), str(key)
    return f"  STARTTLS and STLS with {cert} (trust {ca} in a client to verify it)"


def board_memory(board: str = "pico_w") -> dict:
    """A board profile's memory settings (its buffers, its collection threshold):
    what a gateway under the unix port takes so that it stands in for the board."""
    b = json.loads((ROOT / "boards" / f"{board}.json").read_text())["board"]
    return {k: b[k] for k in ("buffer", "gc_threshold")}


def romfs_image(tree: Path, out: Path) -> Path:
    """A ROMFS image (mpremote's `romfs build`) of what a board's filesystem
    holds: main.py, dialgate/*.mpy, boards/ (from `tree`, build_tree's output)."""
    src = out.with_suffix(".tree")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copytree(tree / "dialgate", src / "dialgate")
    shutil.copytree(tree / "boards", src / "boards")
    shutil.copy(tree / "main.py", src / "main.py")
    return build_romfs(src, out)


def build_romfs(src: Path, out: Path) -> Path:
    """mpremote's `romfs build` of folder `src` (already .mpy: no compiling) into `out`."""
    subprocess.run([sys.executable, "-m", "mpremote", "romfs", "--no-mpy", "-o", str(out), "build", str(src)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def romfs_heap(heap: str, image: Path) -> str:
    """The -X heapsize for a gateway that gets `heap` (e.g. "128K") besides the
    ROMFS image held in it: the image, its block header, and the collector's
    tables for the image's blocks (3 bits per 16-octet block on the 64-bit
    port: 2.4 %), so the gateway sees as much heap as without the image."""
    extra = image.stat().st_size * (1 + 3 / 128) + 256
    return f"{int(heap.rstrip('Kk')) + int(extra // 1024) + 1}K"


def in_use(ports: list[int]) -> list[int]:
    """The loopback ports of `ports` that something else already listens on."""
    import socket

    busy = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (a port in TIME_WAIT is free)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def _die_with_parent(parent: int):
    """preexec_fn for the gateway: SIGTERM to it when this script dies (Linux
    prctl PR_SET_PDEATHSIG), so a gateway outside the terminal's process group
    is never left running behind a killed `make run`."""
    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before prctl took hold
            os._exit(1)
    return arm


def shutdown(p: subprocess.Popen, console: int = 2323, password: str = "") -> None:
    """Stop the gateway the way an admin stops a board: the console's `shutdown`
    (it hangs up and flushes on both runtimes; the unix port has no SIGTERM
    handler, and a SIGINT inside a collection can lock its heap), after a
    `login` with `password` if one is set. Returns once it has exited, or after
    10 s; the caller signals what is still running."""
    from host_tools.console_client import ConsoleClient, ConsoleError

    if p.poll() is not None:
        return
    try:
        c = ConsoleClient("127.0.0.1", console, timeout=5)
        try:
            if password:
                c.login(password)
            ok = c.command("shutdown")[0]
        finally:
            c.close()
    except (OSError, ConsoleError):  # it has exited, or its console does not answer
        ok = False
    try:
        p.wait(timeout=10 if ok else 2)
    except subprocess.TimeoutExpired:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT / "run", help="state: spool, log, ISP mail (default run/)")
    ap.add_argument("--upy", metavar="HEAP", help="run the gateway under MicroPython at this heap (e.g. 128K)")
    ap.add_argument("--odmr", action="store_true",
                    help="ask for the held mail by ODMR (ATRN, RFC 2645) instead of ETRN (make run ODMR=1)")
    ap.add_argument("--romfs", action="store_true",
                    help="with --upy: the code in a ROMFS image, as a board with a ROMFS partition runs it "
                         "(host_tools/romfs_boot.py; the heap grows by the image, which it reports)")
    ap.add_argument("--pop3", action="store_true",
                    help="collect the office's mail from the ISP's POP3 multidrop mailbox instead (make run POP3=1)")
    ap.add_argument("--unload-after", type=int, metavar="S",
                    help="board.unload_after: unload features idle for S seconds (boards: 60)")
    a = ap.parse_args(argv)
    run = a.dir.resolve()
    run.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "configs" / "host.json").read_text())
    cfg.setdefault("spool", {})["path"] = str(run / "spool")
    cfg.setdefault("log", {})["file"] = str(run / "log" / "dialgate.log")
    if a.upy:
        cfg.setdefault("board", {}).update(board_memory())  # a board's buffers, not the PC's
    if a.unload_after is not None:
        cfg.setdefault("board", {})["unload_after"] = a.unload_after
    if a.odmr and a.pop3:
        ap.error("--odmr or --pop3, not both")
    # the gateway's, the ISP's and the modem's fixed ports (printed below), before anything starts:
    # one line instead of three processes' tracebacks
    busy = in_use([2525, 1110, 2323, 2600, 2700] + ([2110] if a.pop3 else []) + ([2366] if a.odmr else []))
    if busy:
        print("make run: " + ", ".join(f"127.0.0.1:{p}" for p in busy) + " already in use: is `make run` running "
              "in another terminal? Stop it there (Ctrl-C) first.", file=sys.stderr)
        return 1
    isp_odmr: list[str] = []
    modem_wiring: list[str] = []
    if a.pop3:
        # the ISP's POP3 mailbox on 2110; over the line, the gateway reaches it at 2528. APOP: no password on the line
        cfg["session"]["etrn"] = []
        cfg["isp"] = {"pop3": {"host": "127.0.0.1", "port": 2110, "user": "office", "password": "office-secret",
                               "tls": "none"}}
        cfg.setdefault("link", {})["pop3"] = "127.0.0.1:2528"
        isp_odmr = ["--pop3", "127.0.0.1:2110", "--multidrop"]
        modem_wiring = ["--forward", "127.0.0.1:2526=127.0.0.1:2600", "--forward", "127.0.0.1:2528=127.0.0.1:2110",
                        "--reverse", "127.0.0.1:2625=127.0.0.1:2525"]
    if a.odmr:
        # the ISP's ODMR service on 2366; over the line, the gateway reaches it at 2527
        cfg["session"]["etrn"] = []
        cfg["isp"] = {"odmr": {"host": "127.0.0.1", "port": 2366, "user": "office", "password": "office-secret",
                               "domains": ["office.test"]}}
        cfg.setdefault("link", {})["odmr"] = "127.0.0.1:2527"
        isp_odmr = ["--odmr", "127.0.0.1:2366"]
        modem_wiring = ["--forward", "127.0.0.1:2526=127.0.0.1:2600", "--forward", "127.0.0.1:2527=127.0.0.1:2366",
                        "--reverse", "127.0.0.1:2625=127.0.0.1:2525"]
    tls_note = lan_certificate(cfg, run / "tls")
    (run / "config.json").write_text(json.dumps(cfg, indent=1))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "firmware"))
    procs: list[tuple[str, subprocess.Popen]] = []
    py = sys.executable
    # each child in a process group of its own: the terminal's Ctrl-C (SIGINT to the
    # foreground group) reaches only this script, which stops them in order below (the
    # gateway first, through its console). A SIGINT straight to the gateway could come in
    # the middle of a collection and lock the unix port's heap (a crash, not a stop).
    own = {"process_group": 0, "preexec_fn": _die_with_parent(os.getpid())}
    procs.append(("isp", subprocess.Popen(
        [py, "-m", "host_tools.isp_emulator", "--listen", "127.0.0.1:2600", "--office-smtp", "127.0.0.1:2625",
         "--dir", str(run / "isp"), "--user", "office:office-secret",
         "--relay-from", "127.0.0.1", "--demo", "2"] + isp_odmr, cwd=ROOT, **own)))
    procs.append(("modem", subprocess.Popen(
        [py, "-m", "host_tools.modem_emulator", "--serial", "127.0.0.1:2700", "--bps", "33600",
         "--time-scale", "0.1"] + modem_wiring, cwd=ROOT, **own)))
    time.sleep(0.5)  # let the peers listen before the gateway starts
    if a.upy:
        from host_tools.upy_test import board_cmd, build_tree

        tree = run / "mpy"
        build_tree(tree, compiled=True)
        shutil.copy(ROOT / "firmware" / "main.py", tree / "main.py")
        upy = str(Path(py).parent / "micropython")
        if a.romfs:
            image = romfs_image(tree, run / "dialgate.romfs")
            heap = romfs_heap(a.upy, image)
            gw_cmd = [upy, "-X", f"heapsize={heap}", str(ROOT / "host_tools" / "romfs_boot.py"), str(image)]
            gw_cwd = ROOT
        else:
            gw_cwd = tree
            gw_cmd = board_cmd(upy, a.upy, "main")  # from the tree, as on a board (see board_cmd)
    else:
        gw_cmd, gw_cwd = [py, "-m", "dialgate"], ROOT
    procs.append(("gateway", subprocess.Popen(gw_cmd + ["--config", str(run / "config.json")], cwd=gw_cwd, env=env,
                                              **own)))
    runtime = (f"MicroPython at {a.upy} heap" + (" + the ROMFS image" if a.romfs else "")) if a.upy else "CPython"
    print(f"dialgate (make run, {runtime}): SMTP 127.0.0.1:2525, POP3 127.0.0.1:1110, console 127.0.0.1:2323", flush=True)
    if tls_note:
        print(tls_note, flush=True)
    print("  emulated modem on 127.0.0.1:2700 (33,600 bps), emulated ISP smtp.isp.test on 127.0.0.1:2600"
          + (", its ODMR service on 127.0.0.1:2366 (held mail by ATRN)" if a.odmr
             else ", its POP3 multidrop mailbox on 127.0.0.1:2110 (collected every call)" if a.pop3
             else " (held mail by ETRN)"),
          flush=True)
    print("  the gateway calls by itself: on the first queued message and every 3 minutes (configs/host.json);",
          flush=True)
    print("  it hangs up once the line is quiet for 10 s. Watch: make console, then `status`, `stats calls`, "
          "`schedule`, `log`", flush=True)

    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    rc = 0
    try:
        while not stop["now"]:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"{name} exited with status {p.returncode}", file=sys.stderr)
                    rc = p.returncode or 1
                    stop["now"] = True
            time.sleep(0.2)
    finally:
        # the gateway first, so it hangs up while the modem is still there
        for name, p in reversed(procs):
            if name == "gateway":
                shutdown(p)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    try:
        print("dialgate stopped", flush=True)
    except OSError:  # the terminal is gone (SIGHUP)
        pass
    return rc


if __name__ == "__main__":
    sys.exit(main())
