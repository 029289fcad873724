"""Crash test: SIGKILL a spool writer process at random points under mixed load, recover, check.

The writer is a real subprocess (tests/host/spool_driver.py) on CPython (hard
links and stubs) and on the MicroPython unix port (stubs), 200 kills in all.
After every kill: recovery runs, every message whose commit returned is intact
in each of its maildrops (unless an expunge of it had started), no partial or
unknown message is visible, no UID appears twice, an expunge that returned
stays done, a fan-out is all-or-nothing, and tmp/, new/ and body/ hold no
leftovers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FIRMWARE = ROOT / "firmware"
DRIVER = Path(__file__).resolve().parent / "spool_driver.py"
UPY = Path(sys.executable).parent / "micropython"
sys.path.insert(0, str(FIRMWARE))

from dialgate.spool import Spool  # noqa: E402

USERS = ["u0", "u1", "u2", "u3", "u4"]


def expected_body(mid: str, n: int) -> bytes:
    lines = [f"{mid} {i:06d} the quick brown fox\r\n".encode() for i in range(n)]
    lines.append(f"END {mid}\r\n".encode())
    return b"".join(lines)


class Oracle:
    def __init__(self, path: Path):
        self.begun: dict[str, tuple[int, list[str], bool]] = {}
        self.committed: set[str] = set()
        self.expunging: set[tuple[str, str]] = set()
        self.expunged: set[tuple[str, str]] = set()
        self.unqueuing: set[str] = set()
        self.unqueued: set[str] = set()
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            w = line.split()
            if not w:
                continue
            if w[0] == "B" and len(w) == 5:
                self.begun[w[1]] = (int(w[2]), w[3].split(","), w[4] == "1")
            elif w[0] == "C" and len(w) == 2:
                self.committed.add(w[1])
            elif w[0] in "XY" and len(w) >= 3:
                for mid in w[2:]:
                    (self.expunging if w[0] == "X" else self.expunged).add((w[1], mid))
            elif w[0] == "D" and len(w) == 2:
                self.unqueuing.add(w[1])
            elif w[0] == "R" and len(w) == 2:
                self.unqueued.add(w[1])
            # a torn last line (killed mid-write) is ignored: its operation had not returned


def read_all(f) -> bytes:
    out = []
    buf = bytearray(4096)
    while True:
        n = f.readinto(buf)
        if not n:
            break
        out.append(bytes(buf[:n]))
    f.close()
    return b"".join(out)


def check(root: Path, oracle: Oracle, links: bool) -> dict[str, int]:
    sp = Spool(str(root), 0, links=links)
    counts = sp.recover()
    problems: list[str] = []
    holders: dict[str, set[str]] = {}
    for u in USERS:
        if not (root / "mail" / u).exists():
            continue
        md = sp.maildrops.open(u)  # a lock held by the killed writer must not be stuck
        try:
            msgs = md.messages()
            uids = [m[0] for m in msgs]
            if len(set(uids)) != len(uids):
                problems.append(f"{u}: a UID appears twice")
            for i, (uid, size) in enumerate(msgs):
                holders.setdefault(uid, set()).add(u)
                if uid not in oracle.begun:
                    problems.append(f"{u}: unknown message {uid}")
                    continue
                if (u, uid) in oracle.expunged:
                    problems.append(f"{u}: expunged {uid} came back")
                want = expected_body(uid, oracle.begun[uid][0])
                got = read_all(md.open_body(i))
                if got != want or size != len(want):
                    problems.append(f"{u}: {uid} partial/corrupt ({len(got)} of {len(want)} octets)")
        finally:
            md.close()
    queued = set(sp.queue.ids())
    for mid in queued:
        if mid not in oracle.begun:
            problems.append(f"queue: unknown {mid}")
            continue
        if mid in oracle.unqueued:
            problems.append(f"queue: removed {mid} came back")
        if read_all(sp.queue.open_body(mid)) != expected_body(mid, oracle.begun[mid][0]):
            problems.append(f"queue: {mid} body partial/corrupt")
    for mid, (_n, users, remote) in oracle.begun.items():
        have = holders.get(mid, set())
        visible = bool(have) or mid in queued
        gone_ok = {u for u in users if (u, mid) in oracle.expunging}
        if mid in oracle.committed or visible:
            # committed (or visible at all): in every maildrop not being expunged, and queued if remote
            missing = [u for u in users if u not in have and u not in gone_ok]
            if missing:
                problems.append(f"{mid}: missing from {missing} (committed={mid in oracle.committed})")
            if remote and mid not in queued and mid not in oracle.unqueuing:
                problems.append(f"{mid}: remote copy not queued")
        extra = have - set(users)
        if extra:
            problems.append(f"{mid}: delivered to {extra} too")
    for d in ("tmp", "new"):
        left = os.listdir(root / d)
        if left:
            problems.append(f"{d}/ not empty after recovery: {left[:5]}")
    for mid in os.listdir(root / "body"):
        if mid not in queued and not any((root / "mail" / u / (mid + ".ref")).exists() for u in USERS):
            problems.append(f"body/{mid} leaked")
    if len(os.listdir(root / "locks")) > len(USERS):
        problems.append("lock files accumulate")
    assert not problems, "\n".join(problems[:20])
    counts["messages"] = sum(len(v) for v in holders.values())
    counts["queued"] = len(queued)
    return counts


def run_kills(tmp_path: Path, runtime: str, links: bool, kills: int, seed: int) -> None:
    root = tmp_path / "spool"
    oracle_path = tmp_path / "oracle"
    rng = random.Random(seed)
    exe = [sys.executable] if runtime == "cpython" else [str(UPY)]
    totals = {"tmp": 0, "fanout": 0, "orphans": 0}
    commits = 0
    t0 = time.monotonic()
    for _ in range(kills):
        cmd = exe + [str(DRIVER), str(FIRMWARE), str(root), str(oracle_path), str(rng.randrange(1 << 30)), str(int(links))]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.03, 0.35) if runtime == "cpython" else rng.uniform(0.005, 0.3))
        if p.poll() is not None:
            raise AssertionError(f"driver exited early: {p.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()  # type: ignore[union-attr]
        oracle = Oracle(oracle_path)
        counts = check(root, oracle, links)
        for key in totals:
            totals[key] += counts[key]
        commits = len(oracle.committed)
    print(f"\n# crash test {runtime} links={links}: {kills} SIGKILLs, {commits} commits, "
          f"{len(Oracle(oracle_path).expunged)} expunged, recovery removed {totals['tmp']} tmp files, "
          f"finished {totals['fanout']} fan-outs, freed {totals['orphans']} orphan bodies; "
          f"{time.monotonic() - t0:.1f}s")


def test_sigkill_cpython_hard_links(tmp_path):
    run_kills(tmp_path, "cpython", True, 80, 1)


def test_sigkill_cpython_stubs(tmp_path):
    run_kills(tmp_path, "cpython", False, 60, 2)


def test_sigkill_micropython(tmp_path):
    if not UPY.exists():
        pytest.skip("no micropython in the venv (make venv)")
    run_kills(tmp_path, "upy", False, 60, 3)
