"""Heap benchmark: the whole gateway under the MicroPython unix port through one
office day, and the smallest heap it survives.

The day, against `make run`'s system (`run_host.py --upy HEAP`: emulated modem
and ISP, gateway from .mpy with a board's 1024-octet buffers):

  boot -> SMTP: bob sends one local message -> POP3: alice
  reads hers -> mail for outside: the gateway calls by itself, the queue leaves over the
  33,600 bps line, ETRN brings the held mail, the line goes down by itself,
  with a rest after each use long enough for the gateway to unload what went
  idle (board.unload_after, 2 s here)

After each step the console's `status` gives the heap in use (after a
collection). Each step also loads the code it needs (features load on first
use, docs/architecture.md "Memory"), so the figures show what each costs. The
same day then runs at smaller heaps to find the least one that completes it; the
ratio printed is that heap against the board budget (boards/pico_w.json).

    python3 -m host_tools.bench_heap [--heap 512K] [--no-search]

64-bit unix port: pointers and object headers are twice a board's, so these
figures are an upper bound for a 32-bit board at the same heap size.
"""

from __future__ import annotations

import argparse
import json
import poplib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools import upy32
from host_tools.console_client import ConsoleClient

ROOT = Path(__file__).resolve().parent.parent
PORTS = (2525, 1110, 2323, 2600, 2700, 2526)
UNLOAD_AFTER = 2  # board.unload_after for the day (boards: 60 s; shorter so the bench is quick)


def _rest() -> None:
    """Wait until idle features are unloaded (board.unload_after), as a board would between uses."""
    time.sleep(UNLOAD_AFTER + 2.5)


def _wait(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except (OSError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return False


LOADED: dict[int, str] = {}  # heap figure -> status's "loaded:" line at that step
MODULES: dict[int, list[str]] = {}  # heap figure -> the firmware modules in memory (console `memory`)
BUFFERS: dict[int, int] = {}  # heap figure -> octets of connection buffers, held and kept for reuse


def _heap(c: ConsoleClient) -> int:
    ok, lines, _ = c.command("status")
    used = None
    for ln in lines:
        if ln.startswith("heap: used "):
            used = int(ln.split()[2])
        elif ln.startswith("loaded: ") and used is not None:
            LOADED[used] = ln[len("loaded: "):]
    if used is None:
        raise RuntimeError(f"no heap line in status: {lines}")
    for ln in c.command("memory")[1]:  # after status: the figure above is what status saw
        if ln.startswith("modules: "):
            MODULES[used] = ln.split(": ")[2].split()
        elif ln.startswith("buffers: "):
            w = ln.split()  # buffers: N of SIZE octets for connections, P kept for reuse
            BUFFERS[used] = (int(w[1]) + int(w[7])) * int(w[3])
    return used


def day(heap_k: int, romfs: bool = False, poll: bool = False) -> tuple[list[tuple[str, int]], str]:
    """Run the office day at `heap_k` KiB. Returns ([(step, heap used)], failure or "").

    `romfs`: the code in a ROMFS image (run_host --romfs): the heap is enlarged
    by the image, and the figures here are without it (romfs_boot.py).
    `poll`: through the call, ask the console for the heap all the time and add
    the highest figure as the step "call peak" (the ISP's delivery after ETRN
    comes between the other steps). Not in the search for the least heap: each
    poll's collection would tidy the heap a board does not get tidied."""
    done: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="dg-bench-heap-") as tmp:
        d = Path(tmp)
        p = subprocess.Popen([sys.executable, "-m", "host_tools.run_host", "--dir", str(d), "--upy", f"{heap_k}K",
                              "--unload-after", str(UNLOAD_AFTER)] + (["--romfs"] if romfs else []),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        c = None
        why = ""
        try:
            if not _wait(lambda: socket.create_connection(("127.0.0.1", 2323), 0.5).close() is None, 30):
                raise RuntimeError("gateway did not start")
            c = ConsoleClient(timeout=30)
            done.append(("boot", _heap(c)))
            for u in ("alice", "bob"):
                if not c.command(f"user add {u} {u}-secret")[0]:
                    raise RuntimeError(f"user add {u} failed")
            with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
                s.sendmail("bob@office.test", ["alice@office.test"], "Subject: lunch\r\n\r\nat noon\r\n")
            done.append(("smtp", _heap(c)))
            _rest()
            done.append(("idle", _heap(c)))
            pop = poplib.POP3("127.0.0.1", 1110, timeout=30)
            pop.user("alice")
            pop.pass_("alice-secret")
            if len(pop.retr(1)[1]) < 2:
                raise RuntimeError("POP3 RETR gave nothing")
            pop.quit()
            done.append(("pop3", _heap(c)))
            _rest()
            done.append(("idle", _heap(c)))
            # mail for outside: the session calls by itself (configs/host.json), sends
            # it, asks for the held mail (ETRN), lingers and hangs up by itself
            with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
                s.sendmail("bob@office.test", ["far@example.net"], "Subject: out\r\n\r\nhello over the modem\r\n")
            internet = d / "isp" / "internet"
            peak = [0]

            def sample() -> None:
                if poll:
                    peak[0] = max(peak[0], _heap(c))

            if not _wait(lambda: sample() or list(internet.glob("*.eml")), 60):
                raise RuntimeError("the outside message did not reach the ISP")
            done.append(("call+relay", _heap(c)))
            if not _wait(lambda: sample() or any(x.startswith("last call: idle: ok") for x in c.command("status")[1]),
                         60):
                raise RuntimeError("the call did not end by itself: " + " | ".join(c.command("status")[1]))
            if poll:
                done.append(("call peak", max(peak[0], done[-1][1])))
            done.append(("hangup", _heap(c)))
            _rest()
            done.append(("idle", _heap(c)))
        except Exception as e:  # noqa: BLE001 - a failed day is a result, reported with its cause
            why = f"{type(e).__name__}: {e}"
        finally:
            if c is not None:
                try:
                    c.close()
                except OSError:
                    pass
            p.send_signal(signal.SIGINT)
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            # run_host stops the gateway with the console's `shutdown`, not a signal
            oom = [ln for ln in out.splitlines() if "MemoryError" in ln]
            if why or oom:
                errs = oom or [ln for ln in out.splitlines() if "Error" in ln]
                why = why or "gateway logged: " + (errs[0] if errs else "?")
            if romfs:
                held = re.search(r"romfs: image \d+ octets, heap (\d+)", out)
                if held is None:
                    done, why = [], why or "romfs_boot printed no image line"
                else:
                    image = int(held.group(1))
                    for used in [u for _, u in done]:
                        LOADED[used - image] = LOADED.get(used, "")
                        MODULES[used - image] = MODULES.get(used, [])
                        BUFFERS[used - image] = BUFFERS.get(used, 0)
                    done = [(name, used - image) for name, used in done]
    return done, why


def least(romfs: bool, hi: int, step: int = 16) -> int:
    """The least heap (KiB, a multiple of `step`) that completes the day: `hi` passes."""
    lo = 32
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        ok = not day(mid, romfs)[1]
        print(f"  at {mid}K: {'completes the day' if ok else 'fails'}", flush=True)
        if ok:
            hi = mid
        else:
            lo = mid
    return hi


# The start of both measuring scripts below, under MicroPython: argv[1] a ROMFS
# image to mount and import from, or "-" and argv[2] the folder of .mpy files.
_MOUNT = """
import gc, sys, vfs
if sys.argv[1] != "-":
    f = open(sys.argv[1], "rb")
    f.seek(0, 2)
    img = bytearray(f.tell())
    f.seek(0)
    f.readinto(img)
    f.close()
    vfs.mount(vfs.VfsRom(img), "/rom")
    sys.path.insert(0, "/rom")
else:
    sys.path.insert(0, sys.argv[2])
"""

# Runs under MicroPython: imports a module's own imports, then the module,
# printing the heap it adds after a collection (one process per module).
_COSTS = _MOUNT + """
for m in sys.argv[3].split(","):
    if m:
        __import__("dialgate." + m)
gc.collect()
a = gc.mem_alloc()
__import__("dialgate." + sys.argv[4])
gc.collect()
print("cost", gc.mem_alloc() - a)
"""


# Runs under MicroPython: the heap that importing a set of modules takes (their
# code, its tables and the module objects, with the qstrs they intern), and of
# that the qstr pools and the interned names' text (qstr_info: n_total_bytes).
_SET = _MOUNT + """
import micropython
f = open(sys.argv[3])
mods = f.read().split()
f.close()
gc.collect()
a = gc.mem_alloc()
micropython.qstr_info()
for m in mods:
    __import__("dialgate." + m)
gc.collect()
print("alloc", gc.mem_alloc() - a)
micropython.qstr_info()
"""


def import_cost(tree: Path, image: Path | None, mods: list[str], command=None) -> tuple[int, int, int]:
    """(heap, qstr octets, qstrs) that importing `mods` takes in a fresh interpreter:
    the unix port, or `command(script, args)`'s (upy32.command: the 32-bit port).
    The list goes in a file: the unix port aborts (uncaught NLR) on a long argv."""
    with tempfile.TemporaryDirectory(prefix="dg-bench-set-") as tmp:
        script = Path(tmp) / "set.py"
        script.write_text(_SET)
        (Path(tmp) / "mods").write_text(" ".join(mods))
        args = [str(image) if image else "-", str(tree), str(Path(tmp) / "mods")]
        cmd = (command(script, args) if command else
               [str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=1024K", str(script), *args])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    q = [(int(m.group(2)), int(m.group(1))) for m in re.finditer(r"n_qstr=(\d+).*n_total_bytes=(\d+)", r.stdout)]
    alloc = re.search(r"^alloc (\d+)", r.stdout, re.M)
    if alloc is None or len(q) != 2:
        raise RuntimeError(f"import_cost: {r.stdout} {r.stderr}")
    return int(alloc.group(1)), q[1][0] - q[0][0], q[1][1] - q[0][1]


def module_costs(tree: Path, image: Path | None) -> dict[str, int]:
    """Heap each firmware module adds once its own imports are loaded, from .mpy
    files in `tree` or from the ROMFS `image` (the import graph make lint checks)."""
    from host_tools.fw_graph import graph

    top = graph()[1]
    mods = set(top) - {"__main__", "__init__", "compat_cpython"}

    def deps(m: str, seen: list[str], path: tuple[str, ...] = ()) -> list[str]:
        # depth first: a module after its own imports. Not compat_cpython (CPython's branch of
        # compat), and not round a cycle (compat <-> compat_cpython: an import under `else:`)
        for d in sorted(top[m]):
            if d not in seen and d != "compat_cpython" and d not in path:
                deps(d, seen, path + (m,))
                seen.append(d)
        return seen

    costs = {}
    with tempfile.TemporaryDirectory(prefix="dg-bench-costs-") as tmp:
        script = Path(tmp) / "costs.py"
        script.write_text(_COSTS)
        for m in sorted(mods):
            r = subprocess.run([str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=1024K", str(script),
                                str(image) if image else "-", str(tree), ",".join(deps(m, [])), m],
                               capture_output=True, text=True, timeout=60)
            if r.stdout.startswith("cost "):
                costs[m] = int(r.stdout.split()[1])
    return costs


def consumers(peaks: dict[bool, tuple[str, int]]) -> None:
    """The biggest consumers by module, as .mpy files and from ROMFS, side by side;
    then each day's peak split into code, qstrs, buffers and the rest."""
    from host_tools.run_host import romfs_image
    from host_tools.upy_test import build_tree

    with tempfile.TemporaryDirectory(prefix="dg-bench-rom-") as tmp:
        tree = Path(tmp) / "mpy"
        build_tree(tree, compiled=True)
        shutil.copy(ROOT / "firmware" / "main.py", tree / "main.py")
        image = romfs_image(tree, Path(tmp) / "dialgate.romfs")
        mpy = module_costs(tree, None)
        rom = module_costs(tree, image)
        size = image.stat().st_size
        split = {romfs: (step, used, import_cost(tree, image if romfs else None, MODULES[used]))
                 for romfs, (step, used) in peaks.items() if MODULES.get(used)}
        why32 = upy32.ensure() if False in split else "no .mpy peak"
        if not why32:
            on32 = import_cost(tree, None, MODULES[split[False][1]], upy32.command)
    print(f"heap each module adds on import (unix port, after its own imports; ROMFS image {size} octets):")
    print(f"  {'module':16s} {'.mpy':>7s} {'romfs':>7s}")
    for m in sorted(mpy, key=lambda k: -mpy[k])[:15]:
        print(f"  {m:16s} {mpy[m]:7d} {rom.get(m, -1):7d}")
    print(f"  {'all ' + str(len(mpy)):16s} {sum(mpy.values()):7d} {sum(rom.values()):7d}")
    for romfs, (step, used, (code, qbytes, qn)) in split.items():
        buf = BUFFERS.get(used, 0)
        rest = used - code - buf
        print(f"the day's peak ({step}, {'ROMFS' if romfs else '.mpy'}): {used} B = "
              f"{len(MODULES[used])} modules imported {code - qbytes} ({100 * (code - qbytes) // used} %) "
              f"+ their {qn} qstrs {qbytes} ({100 * qbytes // used} %) "
              f"+ connection buffers {buf} ({100 * buf // used} %) "
              f"+ state, names interned by modules since unloaded, other buffers and objects {rest} ({100 * rest // used} %)")
    if False in split:
        code, qbytes, qn = split[False][2]
        if why32:
            print(f"the same modules on a 32-bit MicroPython: not measured ({why32})")
        else:
            print(f"the same {len(MODULES[split[False][1]])} modules (.mpy) on a 32-bit MicroPython (wasm32, "
                  f"host_tools/upy32.py): {on32[0]} B with their {on32[2]} qstrs {on32[1]}, against {code} B and "
                  f"{qbytes} here ({on32[0] / code:.2f}x): bytecode and names do not shrink with the pointers, "
                  f"so this port's .mpy figures are a board's to within that ratio")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heap", default="512K", help="heap for the step-by-step figures (default 512K)")
    ap.add_argument("--no-search", action="store_true", help="skip the search for the least heap")
    a = ap.parse_args(argv)
    busy = [p for p in PORTS if socket.socket().connect_ex(("127.0.0.1", p)) == 0]
    if busy:
        print(f"bench_heap: ports of `make run` in use ({busy}); stop it first")
        return 1
    boards = {n: json.loads((ROOT / "boards" / f"{n}.json").read_text())["board"]["heap"] for n in ("pico_w", "esp32")}
    big = int(a.heap.rstrip("Kk"))
    rc = 0
    found = {}
    peaks = {}  # romfs -> (step, heap in use) of the day's highest figure
    for romfs, label, target in ((False, "stock firmware, .mpy files", 160), (True, "code in ROMFS", 96)):
        steps, why = day(big, romfs, poll=True)
        print(f"office day under MicroPython at {big}K, {label} ({'ok' if not why else why}):")
        prev = 0
        for name, used in steps:
            print(f"  {name:11s} heap in use {used:7d} B  ({used - prev:+7d} B)  {LOADED.get(used, '')}")
            prev = used
        if why:
            rc = 1
            continue
        peaks[romfs] = max(steps, key=lambda x: x[1])
        if not a.no_search:
            found[label] = (least(romfs, big), target)
    consumers(peaks)
    for label, (k, target) in found.items():
        ratios = ", ".join(f"{k * 1024 / b:.2f}x {n} ({b // 1024}K)" for n, b in boards.items())
        print(f"least heap for the day, {label}: {k}K (target {target}K: {k / target:.2f}x); "
              f"against the board budgets: {ratios}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
