"""`make run`: the whole system on one host with nothing attached.

Starts the gateway under CPython with the `host` board profile (configs/host.json)
and, as they exist, the emulated modem and the emulated ISP. Prints what listens
where; Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "firmware"))
    (ROOT / "run").mkdir(exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    gw = subprocess.Popen([sys.executable, "-m", "dialgate", "--config", str(ROOT / "configs" / "host.json")],
                          cwd=ROOT, env=env)
    procs.append(("gateway", gw))
    print("dialgate (make run): SMTP 127.0.0.1:2525, POP3 127.0.0.1:1110, console 127.0.0.1:2323", flush=True)
    print("  console: python3 -m host_tools.console_client  (or: make console)", flush=True)

    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
        for _name, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _name, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    print("dialgate stopped", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
