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
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _heap(c: ConsoleClient) -> int:
    ok, lines, _ = c.command("status")
    for ln in lines:
        if ln.startswith("heap: used "):
            return int(ln.split()[2])
    raise RuntimeError(f"no heap line in status: {lines}")


def day(heap_k: int) -> tuple[list[tuple[str, int]], str]:
    """Run the office day at `heap_k` KiB. Returns ([(step, heap used)], failure or "")."""
    done: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="dg-bench-heap-") as tmp:
        d = Path(tmp)
        p = subprocess.Popen([sys.executable, "-m", "host_tools.run_host", "--dir", str(d), "--upy", f"{heap_k}K",
                              "--unload-after", str(UNLOAD_AFTER)],
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
            if not _wait(lambda: list(internet.glob("*.eml")), 60):
                raise RuntimeError("the outside message did not reach the ISP")
            done.append(("call+relay", _heap(c)))
            if not _wait(lambda: any(x.startswith("last call: idle: ok") for x in c.command("status")[1]), 60):
                raise RuntimeError("the call did not end by itself: " + " | ".join(c.command("status")[1]))
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
            if why or "MemoryError" in out:
                errs = [ln for ln in out.splitlines() if "MemoryError" in ln or "Error" in ln]
                why = why or "gateway logged: " + (errs[0] if errs else "?")
    return done, why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heap", default="512K", help="heap for the step-by-step figures (default 512K)")
    ap.add_argument("--no-search", action="store_true", help="skip the search for the least heap")
    a = ap.parse_args(argv)
    busy = [p for p in PORTS if socket.socket().connect_ex(("127.0.0.1", p)) == 0]
    if busy:
        print(f"bench_heap: ports of `make run` in use ({busy}); stop it first")
        return 1
    budget = json.loads((ROOT / "boards" / "pico_w.json").read_text())["board"]["heap"]
    big = int(a.heap.rstrip("Kk"))
    steps, why = day(big)
    print(f"office day under MicroPython at {big}K ({'ok' if not why else why}):")
    prev = 0
    for name, used in steps:
        print(f"  {name:11s} heap in use {used:7d} B  (+{used - prev} B)")
        prev = used
    if why or a.no_search:
        return 1 if why else 0
    lo, hi = 64, big  # lo fails (assumed), hi passes, in KiB
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        ok = not day(mid)[1]
        print(f"  at {mid}K: {'completes the day' if ok else 'fails'}", flush=True)
        if ok:
            hi = mid
        else:
            lo = mid
    print(f"least heap for the whole day: {hi}K; ratio to the board budget "
          f"({budget // 1024}K, boards/pico_w.json): {hi * 1024 / budget:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
