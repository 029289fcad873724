"""dialgate side by side with Postfix and Dovecot on this machine (issue 11).

    python3 -m host_tools.bench_side [--reps 3] [--small] [--quick] [--out docs/performance.md] [--no-strace]

Installs the peers from Debian (postfix with its `smtp-source`, dovecot-pop3d,
strace) through host_tools.pkgs, starts them on loopback from their own config
directories (host_tools.isp_postfix, host_tools.isp_dovecot) and a gateway
process under CPython (tests/host/gateway.py), and measures each load on both
sides in one interleaved run (dialgate, peer, dialgate, peer, ...). Every
figure is durable on both sides: dialgate's SMTP client counts a message at
its 250 (sent after the spool commit's fsyncs), Postfix's once virtual(8) has
put it in the Maildir. Prints one table of medians and ratios dialgate/peer
and, with --out, writes it with the machine it ran on. Assert nothing: the
machine may be shared, so the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import selectors
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "performance.md"
PASSWORD = "Bench-secret1"
RCPT = "alice@office.test"
POP_USERS = ("p1", "p2", "p3", "p4")

FULL = {"smtp4k": 800, "smtp100k": 200, "burst": 50, "pop4k": 1000, "pop1m": 50, "drop": 10000, "fsync": 40}
SMALL = {"smtp4k": 16, "smtp100k": 8, "burst": 10, "pop4k": 8, "pop1m": 1, "drop": 50, "fsync": 8}


def body(size: int, n: int, eol: bytes = b"\r\n") -> bytes:
    head = (b"From: bench@isp.test%sTo: %s%sSubject: bench %d%sMessage-ID: <b%d@isp.test>%s%s"
            % (eol, RCPT.encode(), eol, n, eol, n, eol, eol))
    line = b"x" * 74 + eol
    return head + line * max(1, (size - len(head)) // len(line))


# ---- processes and memory -----------------------------------------------------------


def descendants(roots: list[int]) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [p for p in roots if p]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def memory(pids: list[int]) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) summed over `pids` from smaps_rollup."""
    rss = pss = n = 0
    for p in pids:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        n += 1
        for ln in text.splitlines():
            if ln.startswith("Rss:"):
                rss += int(ln.split()[1])
            elif ln.startswith("Pss:"):
                pss += int(ln.split()[1])
    return rss / 1024, pss / 1024, n


class Sampler:
    """Largest memory() of a side while a load runs."""

    def __init__(self, side: Side) -> None:
        self.side, self.best = side, (0.0, 0.0, 0)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            m = memory(self.side.pids())
            if m[0] > self.best[0]:
                self.best = m
            self._stop.wait(0.05)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


# ---- the two sides -----------------------------------------------------------------------


class Side:
    name = ""
    smtp_port = pop3_port = 0

    def pids(self) -> list[int]:
        raise NotImplementedError

    def delivered_base(self) -> int:
        return 0

    def wait_durable(self, base: int, n: int, timeout: float = 120) -> None:
        """Return once `n` messages sent after delivered_base() == `base` are durable."""

    def cleanup(self) -> None:
        pass


class Dialgate(Side):
    name = "dialgate"

    def __init__(self, work: Path, sizes: dict) -> None:
        sys.path.insert(0, str(ROOT / "firmware"))
        sys.path.insert(0, str(ROOT / "tests" / "host"))
        from gateway import Gateway

        fill_spool(work / "spool", sizes)
        self.gw = Gateway(work, {"log.level": "warn"})
        for u in ("alice", *POP_USERS, "big", "drop"):
            ok, lines, _ = self.gw.command(f"user add {u} {PASSWORD}")
            if not ok:
                raise RuntimeError(f"user add {u}: {lines}")
        self.smtp_port, self.pop3_port = self.gw.smtp_port, self.gw.pop3_port

    def pids(self) -> list[int]:
        return descendants([self.gw.proc.pid])

    def stop(self) -> None:
        self.gw.stop()


def fill_spool(spool: Path, sizes: dict) -> None:
    """The POP3 maildrops, committed the way SMTP does (fsync skipped: setup only)."""
    from dialgate import compat
    from dialgate.delivery import Route
    from dialgate.spool import Spool

    saved = compat.fsync, compat.sync_dir
    compat.fsync = lambda f: f.flush()
    compat.sync_dir = lambda path: None
    try:
        sp = Spool(str(spool), 0)
        sp.recover()
        for user, size, count in maildrops(sizes):
            for i in range(count):
                w = sp.writer()
                w.write(body(size, i))
                w.commit("bench@isp.test", [Route("local", f"{user}@office.test", [user])])
    finally:
        compat.fsync, compat.sync_dir = saved


def maildrops(sizes: dict) -> list[tuple[str, int, int]]:
    return [*((u, 4096, sizes["pop4k"]) for u in POP_USERS), ("big", 1 << 20, sizes["pop1m"]),
            ("drop", 1024, sizes["drop"])]


class Peer(Side):
    """Postfix (SMTP, Maildir delivery) and Dovecot (POP3) with their own configs."""

    name = "peer"

    def __init__(self, work: Path, sizes: dict) -> None:
        from host_tools.isp_dovecot import IspDovecot
        from host_tools.isp_postfix import IspPostfix

        self.pf = IspPostfix(work / "postfix", users={}, mailbox_domains=("office.test",), mailboxes=(RCPT,),
                             message_size_limit=20_000_000).start()
        self.new = self.pf.mail / "office.test" / "alice" / "new"
        base = work / "maildirs"
        nobody = pwd.getpwnam("nobody")
        for user, size, count in maildrops(sizes):
            d = base / user
            for sub in ("new", "cur", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (d / "new" / f"{1700000000 + i}.M{i}P1.bench").write_bytes(body(size, i, b"\n"))
        for dirpath, _dirs, files in os.walk(base):
            for f in [dirpath, *(os.path.join(dirpath, x) for x in files)]:
                os.chown(f, nobody.pw_uid, nobody.pw_gid)
        base.parent.chmod(0o755)
        users = {u: PASSWORD for u, _s, _c in maildrops(sizes)}

        class Multi(IspDovecot):  # one maildir per user, as dialgate has one maildrop each
            def write_files(self) -> None:
                super().write_files()
                self.conf.write_text(self.conf.read_text().replace(
                    f"mail_location = maildir:{self.maildir}", f"mail_location = maildir:{base}/%n"))

        self.dc = Multi(base / "p1", users, root=Path(tempfile.mkdtemp(prefix="bench-dovecot-"))).start()
        self.smtp_port, self.pop3_port = self.pf.ports["smtp"], self.dc.port

    def pids(self) -> list[int]:
        return descendants([self.pf._master_pid(), self.dc._master_pid()])

    def delivered_base(self) -> int:
        try:
            return len(os.listdir(self.new))
        except OSError:
            return 0

    def wait_durable(self, base: int, n: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while self.delivered_base() < base + n:
            if time.monotonic() > end:
                raise RuntimeError(f"postfix delivered {self.delivered_base() - base} of {n}")
            time.sleep(0.005)

    def cleanup(self) -> None:
        shutil.rmtree(self.new, ignore_errors=True)
        self.new.mkdir(exist_ok=True)
        os.chown(self.new, *(lambda p: (p.pw_uid, p.pw_gid))(pwd.getpwnam("postfix")))

    def stop(self) -> None:
        self.dc.stop()
        self.pf.stop()


# ---- loads --------------------------------------------------------------------------------


def smtp_python(side: Side, clients: int, total: int, size: int) -> float:
    """Messages/s, durable, with `clients` smtplib connections sending total/clients each."""
    msg = body(size, 0)
    per = max(1, total // clients)
    base = side.delivered_base()
    errors: list[str] = []

    def one() -> None:
        try:
            s = smtplib.SMTP("127.0.0.1", side.smtp_port, timeout=60)
            for _ in range(per):
                s.sendmail("bench@isp.test", [RCPT], msg)
            s.quit()
        except (OSError, smtplib.SMTPException) as e:
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{side.name}: {errors[0]}")
    side.wait_durable(base, per * clients)
    dt = time.perf_counter() - t0
    side.cleanup()
    return per * clients / dt


def smtp_source(side: Side, clients: int, total: int, size: int) -> float:
    """Messages/s, durable, with Postfix's smtp-source (-s sessions in parallel)."""
    base = side.delivered_base()
    t0 = time.perf_counter()
    r = subprocess.run(["smtp-source", "-c", "-s", str(clients), "-m", str(total), "-l", str(size),
                        "-f", "bench@isp.test", "-t", RCPT, f"127.0.0.1:{side.smtp_port}"],
                       capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source against {side.name}: {r.stderr[-300:]}")
    side.wait_durable(base, total)
    dt = time.perf_counter() - t0
    side.cleanup()
    return total / dt


def burst(side: Side, clients: int, size: int = 4096) -> tuple[int, float]:
    """`clients` connect at once, each sends one message: (served, connect-to-greeting p99 ms).

    One thread drives every connection from one selector, so the figure is the
    server's: 50 client threads would queue for Python's lock and time each
    other (a 20-line asyncio server that only greets measured 8-44 ms p99
    that way). A connection's clock starts at its connect(); the dialogue
    after the greeting is smtplib's, one command at a time (EHLO, MAIL, RCPT,
    DATA, the message, QUIT), and a client counts as served at the 221."""
    msg = body(size, 0) + b".\r\n"
    script = [b"EHLO bench.test\r\n", b"MAIL FROM:<bench@isp.test>\r\n", b"RCPT TO:<%s>\r\n" % RCPT.encode(),
              b"DATA\r\n", msg, b"QUIT\r\n"]
    want = [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    base = side.delivered_base()
    sel = selectors.DefaultSelector()
    lat: list[float] = []
    served = 0
    state: dict[socket.socket, list] = {}  # sock -> [t0, step, buffered reply, octets to send]
    for _ in range(clients):
        c = socket.socket()
        c.setblocking(False)
        state[c] = [time.perf_counter(), 0, b"", b""]
        c.connect_ex(("127.0.0.1", side.smtp_port))
        sel.register(c, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    while state and time.monotonic() < deadline:
        for key, ev in sel.select(1.0):
            c = key.fileobj
            st = state[c]
            if ev & selectors.EVENT_WRITE:
                n = c.send(st[3])
                st[3] = st[3][n:]
                if not st[3]:
                    sel.modify(c, selectors.EVENT_READ)
                continue
            try:
                d = c.recv(65536)
            except OSError:
                d = b""
            st[2] += d
            done = not d
            while not done and b"\r\n" in st[2]:
                line, _, st[2] = st[2].partition(b"\r\n")
                if line[3:4] == b"-":
                    continue  # a multi-line reply goes on
                if line[:3] != want[st[1]]:
                    done = True
                    break
                if st[1] == 0:
                    lat.append((time.perf_counter() - st[0]) * 1000)
                if st[1] == len(script):
                    served += 1
                    done = True
                    break
                st[3] = script[st[1]]
                st[1] += 1
                sel.modify(c, selectors.EVENT_WRITE)
            if done:
                sel.unregister(c)
                c.close()
                del state[c]
    for c in state:
        c.close()
    try:
        side.wait_durable(base, served, 60)
    finally:
        side.cleanup()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    return served, p99


class Pop:
    """A lean POP3 client (raw socket, no per-line Python work), so the server is timed."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def _more(self) -> None:
        d = self.s.recv(262144)
        if not d:
            raise OSError("POP3 server closed")
        self.buf += d

    def cmd(self, c: str) -> bytes:
        self.s.sendall(c.encode() + b"\r\n")
        r = self.line()
        if not r.startswith(b"+OK"):
            raise OSError(f"{c.split()[0]}: {r!r}")
        return r

    def multi(self, c: str) -> int:
        self.cmd(c)
        n = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0 or self.buf.startswith(b".\r\n"):
                end = 3 if self.buf.startswith(b".\r\n") else i + 5
                n += end
                self.buf = self.buf[end:]
                return n
            keep = len(self.buf) - 4
            if keep > 0:
                n += keep
                self.buf = self.buf[keep:]
            self._more()

    def login(self, user: str) -> None:
        self.cmd(f"USER {user}")
        self.cmd(f"PASS {PASSWORD}")

    def close(self) -> None:
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.s.close()


def pop_retr(side: Side, users: tuple[str, ...], count: int) -> float:
    """Messages/s retrieved: one client per user, RETR 1..count each (nothing deleted)."""
    def one(u: str) -> None:
        p = Pop(side.pop3_port)
        p.login(u)
        for i in range(1, count + 1):
            p.multi(f"RETR {i}")
        p.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count * len(users) / (time.perf_counter() - t0)


def pop_list(side: Side, cold: bool) -> float:
    """Milliseconds for connect, login, UIDL and LIST of the big maildrop."""
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    p = Pop(side.pop3_port)
    p.login("drop")
    p.multi("UIDL")
    p.multi("LIST")
    ms = (time.perf_counter() - t0) * 1000
    p.close()
    return ms


_CAN_DROP: bool | None = None


def drop_caches() -> bool:
    global _CAN_DROP
    if _CAN_DROP is False:
        return False
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        _CAN_DROP = True
    except OSError:
        _CAN_DROP = False
    return _CAN_DROP


# ---- fsyncs ----------------------------------------------------------------------------------


def fsyncs(side: Side, n: int) -> dict[str, int] | None:
    """fsync/fdatasync calls of all the side's processes while `n` 4 KB messages go in."""
    if shutil.which("strace") is None:
        return None
    out = Path(tempfile.mkstemp(prefix="bench-strace-")[1])
    cmd = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out)]
    for p in side.pids():
        cmd += ["-p", str(p)]
    st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    try:
        smtp_python(side, min(8, n), n, 4096)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
    calls = {"fsync": 0, "fdatasync": 0}
    for ln in out.read_text().splitlines():
        t = ln.split()
        if t and t[-1] in calls and len(t) >= 5:
            calls[t[-1]] = int(t[3])
    out.unlink()
    return calls


# ---- the run -----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.partition(":")[2].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on a shared machine shows here
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load} at the end")


def peer_versions() -> str:
    out = []
    for cmd in (["postconf", "-d", "-h", "mail_version"], ["dovecot", "--version"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip())
        except OSError:
            out.append("?")
    return f"Postfix {out[0]}, Dovecot {out[1].split()[0] if out[1] else '?'}"


def install() -> None:
    from host_tools import isp_dovecot, isp_postfix, pkgs

    pkgs.PROGRAMS.update(isp_postfix.PROGRAMS)
    pkgs.PROGRAMS.update(isp_dovecot.PROGRAMS)
    pkgs.PROGRAMS.setdefault("strace", "strace")
    why = pkgs.ensure(*isp_postfix.PACKAGES, "dovecot-pop3d")
    if why:
        raise SystemExit(f"bench_side: {why}")
    if pkgs.ensure("strace"):
        print("bench_side: strace not available: no fsync counts")
    if os.geteuid() != 0:
        raise SystemExit("bench_side: Postfix's and Dovecot's masters must start as root")


def run(reps: int, sizes: dict, strace: bool, quick: bool = False) -> tuple[list[tuple], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="bench-side-"))
    work.chmod(0o755)
    rows: list[tuple] = []
    notes: list[str] = []
    sides: list[Side] = []
    try:
        t0 = time.perf_counter()
        dg = Dialgate(work / "dialgate", sizes)
        sides.append(dg)
        peer = Peer(work / "peer", sizes)
        sides.append(peer)
        print(f"  set up in {time.perf_counter() - t0:.0f} s", flush=True)
        for s in sides:  # warm up: Postfix spawns its daemons, Dovecot builds its indexes
            smtp_python(s, 1, 2, 1024)
            pop_retr(s, POP_USERS, 1)
            pop_list(s, False)
            pop_retr(s, ("big",), 1)
        idle = {s.name: memory(s.pids()) for s in sides}

        def measure(label: str, unit: str, better: str, fn, times: int = 0) -> None:
            got: dict[str, list[float]] = {"dialgate": [], "peer": []}
            ratios = []
            for _ in range(max(reps, times)):
                a = fn(dg)
                b = fn(peer)
                got["dialgate"].append(a)
                got["peer"].append(b)
                ratios.append(a / b if b else float("nan"))
            row = (label, unit, statistics.median(got["dialgate"]), statistics.median(got["peer"]),
                   statistics.median(ratios), min(ratios), max(ratios), better)
            rows.append(row)
            print("  " + fmt_row(row), flush=True)

        load_mem: dict[str, tuple] = {}

        def smtp4k(s: Side) -> float:
            with Sampler(s) as m:
                r = smtp_python(s, 8, sizes["smtp4k"], 4096)
            if m.best[0] > load_mem.get(s.name, (0,))[0]:
                load_mem[s.name] = m.best
            return r

        # about a second each, and the spread between repetitions on a shared
        # machine is wider than the gaps to the targets: 2 * reps repetitions
        measure("SMTP 8 clients x 4 KB, smtplib", "msg/s", "higher", smtp4k, 2 * reps)
        measure("SMTP 8 clients x 4 KB, smtp-source", "msg/s", "higher",
                lambda s: smtp_source(s, 8, sizes["smtp4k"], 4096), 2 * reps)
        if not quick:  # --quick: the 4 KB SMTP loads and the fsync counts only
            postfix = {r[0].rsplit(", ", 1)[1]: r[3] for r in rows if r[0].startswith("SMTP 8 clients x 4 KB")}
            notes.append(floor_smtp_note(dg, postfix, sizes["smtp4k"], reps))
            print("  " + notes[-1], flush=True)
            measure("SMTP 8 clients x 100 KB, smtplib", "msg/s", "higher",
                    lambda s: smtp_python(s, 8, sizes["smtp100k"], 102400), 2 * reps)
            measure("SMTP 8 clients x 100 KB, smtp-source", "msg/s", "higher",
                    lambda s: smtp_source(s, 8, sizes["smtp100k"], 102400), 2 * reps)
            bursts: dict[str, list[tuple[int, float]]] = {"dialgate": [], "peer": []}

            def burst_served(s: Side) -> float:
                r = burst(s, sizes["burst"])
                bursts[s.name].append(r)
                return r[0]

            measure(f"{sizes['burst']} clients connecting at once, 4 KB each: served", "clients", "higher",
                    burst_served)
            for name in ("dialgate", "peer"):
                bursts[name] = bursts[name][-reps:]
            p99 = {n: [b[1] for b in v] for n, v in bursts.items()}
            ratios = [a / b if b else float("nan") for a, b in zip(p99["dialgate"], p99["peer"], strict=True)]
            row = ("  the same burst: connect to greeting, p99", "ms", statistics.median(p99["dialgate"]),
                   statistics.median(p99["peer"]), statistics.median(ratios), min(ratios), max(ratios), "lower")
            rows.append(row)
            print("  " + fmt_row(row), flush=True)
            # a tenth of a second each, one round trip per RETR: 3 * reps repetitions
            measure("POP3 RETR 4 KB, 1 client", "msg/s", "higher", lambda s: pop_retr(s, ("p1",), sizes["pop4k"]),
                    3 * reps)
            measure("POP3 RETR 4 KB, 4 clients", "msg/s", "higher", lambda s: pop_retr(s, POP_USERS, sizes["pop4k"]),
                    3 * reps)
            dovecot = {r[0].rsplit(", ", 1)[1]: r[3] for r in rows if r[0].startswith("POP3 RETR 4 KB")}
            notes.append(floor_note(dg, dovecot, sizes["pop4k"], 3 * reps))
            print("  " + notes[-1], flush=True)
            measure("POP3 RETR 1 MB, 1 client", "msg/s", "higher", lambda s: pop_retr(s, ("big",), sizes["pop1m"]))
            measure(f"POP3 login + UIDL + LIST, {sizes['drop']} messages, warm", "ms", "lower",
                    lambda s: pop_list(s, False))
            if drop_caches():
                measure(f"POP3 login + UIDL + LIST, {sizes['drop']} messages, cold", "ms", "lower",
                        lambda s: pop_list(s, True))
                notes.append("Cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before each cold login on both sides "
                             "(the write was accepted; in a container it may not empty the host's whole page cache).")
            else:
                notes.append("Cold LIST not measured: writing /proc/sys/vm/drop_caches is not permitted here.")
            dgi, pei = idle["dialgate"], idle["peer"]
            dgl, pel = load_mem.get("dialgate", (0, 0, 0)), load_mem.get("peer", (0, 0, 0))
            mem = [("memory idle: RSS", dgi[0], pei[0]), ("memory idle: PSS", dgi[1], pei[1]),
                   ("memory under SMTP 4 KB load: RSS (peak)", dgl[0], pel[0]),
                   ("memory under SMTP 4 KB load: PSS (peak)", dgl[1], pel[1])]
            for label, a, b in mem:
                row = (label, "MiB", a, b, a / b if b else float("nan"), 0, 0, "lower")
                rows.append(row)
                print("  " + fmt_row(row), flush=True)
            cap = json.loads((ROOT / "boards" / "host.json").read_text())["net"]["max_connections"]
            notes.append(f"Burst: dialgate's host profile caps sessions at net.max_connections = {cap}; "
                         "clients over the cap get an immediate 421 and count as not served.")
            notes.append(f"Processes: dialgate {dgi[2]} idle, {dgl[2]} under load; Postfix + Dovecot {pei[2]} idle, "
                         f"{pel[2]} under load.")
        if strace and shutil.which("strace"):
            n = sizes["fsync"]
            for s in sides:
                c = fsyncs(s, n)
                if c is not None:
                    notes.append(f"fsyncs per 4 KB message, {s.name} side (strace -f -c over {n} messages): "
                                 f"fsync {c['fsync'] / n:.2f}, fdatasync {c['fdatasync'] / n:.2f}.")
                    print("  " + notes[-1], flush=True)
    finally:
        for s in reversed(sides):
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - stop the other side whatever happened
                print(f"  stopping {s.name}: {e!r}")
        shutil.rmtree(work, ignore_errors=True)
    return rows, notes


def floor_note(dg: Side, dovecot: dict[str, float], count: int, times: int) -> str:
    """dialgate's POP3 RETR rates, 1 and 4 clients, against the CPython asyncio
    floor (host_tools/asyncio_floor.py: an asyncio server that answers RETR from
    memory), interleaved as the table's loads are; and the floor against
    `dovecot` (clients -> Dovecot's median from the table, the same run)."""
    from host_tools.asyncio_floor import Floor

    floor = Floor()
    parts = []
    try:
        pop_retr(floor, ("p1",), 1)  # warm up
        for label, users in (("1 client", ("p1",)), ("4 clients", POP_USERS)):
            a, b, ratios = [], [], []
            for _ in range(times):
                a.append(pop_retr(dg, users, count))
                b.append(pop_retr(floor, users, count))
                ratios.append(a[-1] / b[-1])
            ma, mb = statistics.median(a), statistics.median(b)
            part = (f"{label}: dialgate {ma:,.0f} msg/s, the floor {mb:,.0f} msg/s, dialgate "
                    f"{statistics.median(ratios):.2f}x the floor ({min(ratios):.2f}–{max(ratios):.2f})")
            if dovecot.get(label):
                part += f", the floor {mb / dovecot[label]:.2f}x Dovecot"
            parts.append(part)
    finally:
        floor.stop()
    return ("POP3 RETR 4 KB against the CPython asyncio floor (host_tools/asyncio_floor.py: asyncio's own readline, "
            "and a 4 KB message from memory, no file, no parsing; one thread, as dialgate's loop): "
            + "; ".join(parts) + ".")


def floor_smtp_note(dg: Side, postfix: dict[str, float], count: int, times: int) -> str:
    """dialgate's SMTP 8 clients x 4 KB rates against the CPython asyncio floor
    (host_tools/asyncio_floor.py: an asyncio SMTP server that stores nothing),
    with both clients, interleaved; and the floor against `postfix` (client ->
    Postfix's median from the table, the same run)."""
    from host_tools.asyncio_floor import Floor

    floor = Floor()
    parts = []
    try:
        smtp_python(floor, 1, 2, 1024)  # warm up
        for client, fn in (("smtplib", smtp_python), ("smtp-source", smtp_source)):
            a, b = [], []
            for _ in range(times):
                a.append(fn(dg, 8, count, 4096))
                b.append(fn(floor, 8, count, 4096))
            ma, mb = statistics.median(a), statistics.median(b)
            parts.append(f"{client}: dialgate {ma:,.0f} msg/s, the floor {mb:,.0f} msg/s (dialgate {ma / mb:.2f}x the "
                         f"floor, the floor {mb / postfix[client]:.2f}x Postfix)" if postfix.get(client) else
                         f"{client}: dialgate {ma:,.0f} msg/s, the floor {mb:,.0f} msg/s")
    finally:
        floor.stop()
    return ("SMTP 8 clients x 4 KB against the CPython asyncio floor (host_tools/asyncio_floor.py: asyncio's own "
            "readline and readuntil, 250 to everything, nothing stored, no fsync): " + "; ".join(parts) + ".")


def fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def fmt_row(r: tuple) -> str:
    label, unit, a, b, ratio, lo, hi, better = r
    spread = f" ({lo:.2f}–{hi:.2f})" if hi else ""
    return f"| {label} | {unit} | {fmt(a)} | {fmt(b)} | {ratio:.2f}×{spread} | {better} |"


def table(rows: list[tuple]) -> str:
    head = ("| load | unit | dialgate | Postfix / Dovecot | dialgate/peer, median (min–max) | better |\n"
            "|---|---|---|---|---|---|\n")
    return head + "\n".join(fmt_row(r) for r in rows) + "\n"


def write_doc(path: Path, rows: list[tuple], notes: list[str], reps: int, took: float) -> None:
    from host_tools.bench_link import BEGIN, END

    old = path.read_text() if path.exists() else ""
    link = old[old.index(BEGIN) : old.index(END) + len(END)] + "\n" if BEGIN in old and END in old else ""
    text = f"""# Performance: dialgate side by side with Postfix and Dovecot

Written by `make bench` (host_tools/bench_side.py); do not edit by hand. Each
load ran on both sides in one interleaved run (dialgate, peer, dialgate, peer,
…), {reps} times ({2 * reps} for the SMTP loads, about a second each, and {3 * reps} for the POP3 4 KB
loads, a tenth of a second each); the figures are medians, and the ratio column is the median
of the per-repetition ratios dialgate/peer with their spread. Durable on both
sides: a dialgate message counts at its 250 (after the spool commit's fsyncs;
sessions that commit together share a directory fsync, docs/storage.md), a
Postfix message once virtual(8) has delivered it into the Maildir. The
dialgate side is one gateway process under CPython (host profile:
`net.max_connections` from boards/host.json, so a burst beyond it gets a polite 421); the peer is
Postfix (SMTP) and Dovecot (POP3), each from its own config directory on
loopback. The clients are the same for both: Python's smtplib, Postfix's
`smtp-source`, a lean raw-socket POP3 client, and for the burst one thread
driving all 50 connections from a selector (50 client threads would wait for
Python's lock and time each other, not the server).

Machine: {machine()}; {peer_versions()}. Run took {took:.0f} s. The machine
is shared with other work while the bench runs: the figures are noisy, compare
ratios from one run, not absolute numbers across runs.

{table(rows)}
""" + "".join(f"- {n}\n" for n in notes)
    # the dial-session section is bench_link's (make bench runs it first): kept as it was
    path.write_text(text + ("\n" + link if link else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny sizes (the smoke test)")
    ap.add_argument("--out", default=str(OUT), help="markdown file to write ('' for none)")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="only the 4 KB SMTP loads and the fsync counts (docs/storage.md's figures)")
    a = ap.parse_args(argv)
    install()
    t0 = time.perf_counter()
    rows, notes = run(a.reps, SMALL if a.small else FULL, not a.no_strace, a.quick)
    took = time.perf_counter() - t0
    print(table(rows))
    for n in notes:
        print(n)
    if a.out:
        write_doc(Path(a.out), rows, notes, a.reps, took)
        print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
