"""The whole office on loopback for the reliability battery (docs/reliability.md):
the emulated ISP (host_tools/isp_emulator.py) holding mail for office.test until
ETRN (or ATRN), and with `pop3` also the office's POP3 multidrop mailbox, the
emulated modem between it and a gateway process, and a ledger that accounts for
every tagged message wherever it is: a maildrop, the outbound queue, the ISP's
held mail or its mailbox, "the Internet" behind the ISP, a DSN to its sender,
or a POP3 client that took it.

Every message carries its tag in its Message-ID (`<TAG@dialgate.test>`), so a
copy is found by reading files: the gateway's spool (with the gateway stopped
or idle), the ISP's store, the POP3 client's own record.
"""

from __future__ import annotations

import json
import os
import poplib
import re
import smtplib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from modem_emu import ModemEmulator

from gateway import Gateway, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent.parent
USERS = ("alice", "bob", "carol")
REJECT = "reject@example.net"
TAG_RE = re.compile(rb"<(T[a-z]\d+)@dialgate\.test>")
DSN_SUBJECT = b"Subject: Undelivered Mail Returned to Sender"
SOAK = os.environ.get("DIALGATE_SOAK", "") not in ("", "0")


def message(tag: str, sender: str, rcpts: list[str], size: int) -> bytes:
    head = (f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@dialgate.test>\r\n\r\n").encode()
    out = bytearray(head)
    k = 0
    while len(out) < size:
        out += (b".%s leading dot %d\r\n" if k % 7 == 0 else b"%s line %d of the text\r\n") % (tag.encode(), k)
        k += 1
    return bytes(out)


def what(data: bytes) -> tuple[str, list[str]]:
    """("msg", [its tag]) or ("dsn", [tags of the messages it reports]); ("?", []) otherwise."""
    head = data.split(b"\r\n\r\n", 1)[0]
    if DSN_SUBJECT in head:
        return "dsn", sorted({t.decode() for t in TAG_RE.findall(data)})
    m = re.search(rb"(?im)^Message-ID: *<(T[a-z]\d+)@dialgate\.test>", head)
    return ("msg", [m.group(1).decode()]) if m else ("?", [])


class Isp:
    """host_tools/isp_emulator.py as a process: relays for 127.0.0.1, holds office.test."""

    def __init__(self, workdir: Path, office_smtp: int, odmr: bool = False, pop3: bool = False,
                 extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.odmr_port = free_port() if odmr else 0  # its ODMR service (RFC 2645), AUTH office / office-secret
        self.pop3_port = free_port() if pop3 else 0  # the office's multidrop mailbox (RFC 1939), office / office-secret
        self.dir = workdir / "isp"
        self.out = open(workdir / "isp.out", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_tools.isp_emulator", "--listen", f"127.0.0.1:{self.port}",
             "--office-smtp", f"127.0.0.1:{office_smtp}", "--dir", str(self.dir), "--relay-from", "127.0.0.1",
             "--reject", REJECT, "--user", "office:office-secret"]
            + (["--odmr", f"127.0.0.1:{self.odmr_port}"] if odmr else [])
            + (["--pop3", f"127.0.0.1:{self.pop3_port}"] if pop3 else []) + (extra or []),
            cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=10)

    def fault(self, name: str) -> None:
        """Arm one fault (isp_emulator's XFAULT) and clear the last hit marker."""
        with self.smtp() as s:
            code, text = s.docmd("XFAULT", name)
            assert code == 250, (code, text)

    def odmr(self, knobs: str = "") -> None:
        """Set the ODMR service's knobs for the next calls (isp_emulator's XODMR)."""
        with self.smtp() as s:
            code, text = s.docmd("XODMR", knobs)
            assert code == 250, (code, text)

    def atrn_seen(self) -> list[str]:
        """The argument of every ATRN the ODMR service got, in order."""
        try:
            return (self.dir / "atrn.seen").read_text().splitlines()
        except OSError:
            return []

    def fault_hit(self) -> str:
        try:
            return (self.dir / "fault.hit").read_text().strip()
        except OSError:
            return ""

    def put_mailbox(self, rcpt: str, data: bytes) -> None:
        """Deliver one copy into the POP3 mailbox, as the ISP's MDA would (atomic rename)."""
        from host_tools.isp_emulator import Store

        Store(self.dir).put_mailbox(rcpt, data)

    def mailbox(self) -> dict[str, tuple[str, bytes]]:
        """UIDL -> (envelope recipient from X-Original-To, message) still in the POP3 mailbox."""
        out = {}
        for eml in sorted((self.dir / "mailbox").glob("*.eml")):
            try:
                data = eml.read_bytes()
            except OSError:
                continue  # removed by a QUIT while we looked
            m = re.search(rb"(?im)^X-Original-To: *(\S+)", data.split(b"\r\n\r\n", 1)[0])
            out[eml.stem] = (m.group(1).decode() if m else "", data)
        return out

    def store(self, box: str) -> list[tuple[list[str], bytes]]:
        """[(envelope recipients, message)] in held/ or internet/."""
        out = []
        for eml in sorted((self.dir / box).glob("*.eml")):
            try:
                env = json.loads(eml.with_suffix(".env").read_text())
                out.append((env["to"], eml.read_bytes()))
            except (OSError, ValueError):
                continue  # removed while we looked (a held message being delivered)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


@dataclass
class Pop3Ledger:
    """What a POP3 client saw and did, per user (UIDs are stable: RFC 1939 §7)."""

    seen: dict[str, set[str]] = field(default_factory=lambda: {u: set() for u in USERS})
    took: dict[str, dict[str, bytes]] = field(default_factory=lambda: {u: {} for u in USERS})
    may_be_gone: dict[str, set[str]] = field(default_factory=lambda: {u: set() for u in USERS})
    quits_ok: int = 0
    sessions: int = 0

    def collect(self, port: int, user: str, dele: float, rng, timeout: float = 5.0) -> None:
        """One session: UIDL, RETR what is new, DELE a share (`dele`), QUIT.
        A UID counts as possibly gone only once QUIT was sent after its DELE."""
        p = poplib.POP3("127.0.0.1", port, timeout=timeout)
        self.sessions += 1
        deleted: list[str] = []
        try:
            p.user(user)
            p.pass_(user + "-secret")
            for line in p.uidl()[1]:
                n, uid = line.decode().split()
                self.seen[user].add(uid)
                if uid not in self.took[user]:
                    self.took[user][uid] = b"\r\n".join(p.retr(int(n))[1]) + b"\r\n"
                if rng.random() < dele:
                    p.dele(int(n))
                    deleted.append(uid)
            self.may_be_gone[user].update(deleted)  # QUIT goes now: from here they may be gone
            p.quit()
            self.quits_ok += 1
        finally:
            if p.sock is not None:  # cut short (QUIT closes it)
                p.close()


class Office:
    """ISP emulator + modem emulator + a gateway process (CPython), wired through
    the modem's line: gateway -> link.smtp -> ISP, ISP -> reverse -> gateway SMTP.
    Calls happen only when asked (`dial`): no schedule, so a restarted gateway
    sits still while a test reads its spool."""

    def __init__(self, workdir: Path, bps: int = 200_000, scale: float = 0.01, over: dict | None = None,
                 spool: Path | None = None, scenarios: list[str] | None = None, odmr: bool = False,
                 pop3: bool = False, isp_args: list[str] | None = None, runtime: str = "cpython",
                 heap: str = "128K", mpy: bool = False) -> None:
        """`odmr`: the held mail comes by ODMR (ATRN on the gateway's own
        connection through the line) instead of ETRN. `pop3`: the ISP also keeps
        a multidrop mailbox that every call collects (after the ETRN), through
        the line. `isp_args`: more isp_emulator options; `runtime`/`heap`/`mpy`:
        the gateway's (tests/host/gateway.py)."""
        self.workdir = workdir
        self.gw_smtp = free_port()
        self.rev = free_port()
        self.fwd = free_port()
        self.fwd_odmr = free_port()
        self.fwd_pop3 = free_port()
        self.isp = Isp(workdir, self.rev, odmr, pop3, isp_args)
        self.emu: ModemEmulator | None = None
        self.gw: Gateway | None = None
        try:
            forward = {self.fwd: self.isp.port}
            if odmr:
                forward[self.fwd_odmr] = self.isp.odmr_port
            if pop3:
                forward[self.fwd_pop3] = self.isp.pop3_port
            self.emu = ModemEmulator(scenarios or ["answer"], bps=bps, rtt_ms=20, scale=scale,
                                     forward=forward, reverse={self.rev: self.gw_smtp})
            (workdir / "gw").mkdir()
            cfg = {
                "smtp.listen": [f"127.0.0.1:{self.gw_smtp}"],
                "log.console": False,
                "link.type": "emulated", "link.smtp": f"127.0.0.1:{self.fwd}",
                "modem.port": self.emu.url, "modem.guard_ms": 50, "modem.redial": 0,
                "modem.connect_timeout": 5, "modem.command_timeout": 1,
                "relay.smarthost": f"127.0.0.1:{self.isp.port}", "relay.tls": "none", "relay.timeout": 10,
                "session.etrn": ["office.test"], "session.idle_hangup": 5, "session.min_online": 0,
                "session.retry_delay": 600, "schedule.min_gap": 0,
            }
            if odmr:
                cfg.update({"session.etrn": [], "isp.odmr.host": "127.0.0.1", "isp.odmr.port": self.isp.odmr_port,
                            "isp.odmr.user": "office", "isp.odmr.password": "office-secret",
                            "isp.odmr.domains": ["office.test"], "link.odmr": f"127.0.0.1:{self.fwd_odmr}"})
            if pop3:  # APOP (the greeting has a timestamp): no TLS needed, no password on the line
                cfg.update({"isp.pop3.host": "127.0.0.1", "isp.pop3.port": self.isp.pop3_port,
                            "isp.pop3.user": "office", "isp.pop3.password": "office-secret",
                            "isp.pop3.tls": "none", "link.pop3": f"127.0.0.1:{self.fwd_pop3}"})
            if spool is not None:
                cfg["spool.path"] = str(spool)
            cfg.update(over or {})
            self.gw = Gateway(workdir / "gw", cfg, runtime=runtime, heap=heap, mpy=mpy)
            for u in USERS:
                ok, lines, _ = self.gw.command(f"user add {u} {u}-secret")
                assert ok, lines
        except BaseException:
            self.close()
            raise
        self.spool = Path(cfg.get("spool.path", workdir / "gw" / "spool"))

    # ---- driving --------------------------------------------------------------

    def command(self, line: str) -> list[str]:
        assert self.gw is not None
        ok, lines, _ = self.gw.command(line)
        assert ok, (line, lines)
        return lines

    def submit(self, tag: str, rcpts: list[str], size: int = 600, sender: str = "alice@office.test",
               declare_size: bool = True) -> None:
        """One LAN submission; raises unless the gateway answered 250 to the final dot.
        `declare_size=False`: no SIZE= at MAIL (the size is found out during DATA)."""
        assert self.gw is not None
        with smtplib.SMTP("127.0.0.1", self.gw_smtp, timeout=10) as s:
            s.ehlo()
            if not declare_size:
                s.esmtp_features.pop("size", None)
            s.sendmail(sender, rcpts, message(tag, sender, rcpts, size))

    def mail_to_mailbox(self, tag: str, rcpts: list[str], size: int = 600) -> None:
        """Mail from the Internet into the ISP's multidrop mailbox: one copy per recipient."""
        data = message(tag, "far@example.net", rcpts, size)
        for r in rcpts:
            self.isp.put_mailbox(r, data)

    def hold(self, tag: str, rcpts: list[str], size: int = 600) -> None:
        """Mail from the Internet for the office: the ISP holds it until ETRN."""
        with self.isp.smtp() as s:
            s.sendmail("far@example.net", rcpts, message(tag, "far@example.net", rcpts, size))

    def calls(self) -> list[dict]:
        import csv

        lines = self.command("stats csv")
        rows = list(csv.reader(lines[:-1] if lines and lines[-1] == "OK" else lines))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]

    def modem(self) -> dict[str, str]:
        assert self.emu is not None
        words = self.emu.status().split()
        return dict(w.split("=", 1) for w in words[2:] if "=" in w) | {"state": words[1]}

    def last_call(self) -> int:
        """The number of the last call on record (0: none). By number, not by count:
        the cost log is trimmed to its size limit in a long run."""
        return max((int(c["n"]) for c in self.calls()), default=0)

    def call_after(self, n: int, timeout: float = 60.0) -> dict:
        """Wait for the cost record of the first call after call `n`; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [c for c in self.calls() if int(c["n"]) > n]
            if later:
                return min(later, key=lambda c: int(c["n"]))
            time.sleep(0.2)
        raise AssertionError("the call did not end:\n" + "\n".join(self.command("log 40")))

    def call(self, timeout: float = 60.0) -> dict:
        """`dial`, then wait for the call's cost record; returns it."""
        n = self.last_call()
        self.command("dial")
        return self.call_after(n, timeout)

    def drain(self, pop3: Pop3Ledger, rng, calls: int = 8) -> int:
        """Calls until nothing is queued or held, then every maildrop emptied by POP3.
        Returns the calls made."""
        self.command("queue retry all")  # anything the crashes left on a retry timer goes now
        made = 0
        while made < calls and (self.queued() or self.isp.store("held") or self.isp.mailbox()):
            self.call(300)  # a long backlog after a soak's kills
            made += 1
        for u in USERS:
            pop3.collect(self.gw.pop3_port, u, 1.0, rng)  # type: ignore[union-attr]
        return made

    # ---- where the messages are ----------------------------------------------

    def queued(self) -> dict[str, tuple[list[str], bytes]]:
        """id -> (pending recipients, message) of the outbound queue on flash."""
        out = {}
        q = self.spool / "queue"
        for rec in sorted(q.iterdir()) if q.exists() else []:
            try:
                r = json.loads(rec.read_text())
                body = (self.spool / "body" / rec.name).read_bytes()
            except (OSError, ValueError):
                continue
            out[rec.name] = ([a for a, st, *_ in r["rcpts"] if st == "pending"], body)
        return out

    def maildrops(self) -> dict[str, dict[str, bytes]]:
        """user -> {uid: message} read from the spool (hard links, or .ref stubs to body/)."""
        out: dict[str, dict[str, bytes]] = {}
        for u in USERS:
            box: dict[str, bytes] = {}
            d = self.spool / "mail" / u
            for f in sorted(d.iterdir()) if d.exists() else []:
                uid = f.name[:-4] if f.name.endswith(".ref") else f.name
                assert uid not in box, f"{u}: UID {uid} twice"
                try:
                    box[uid] = (self.spool / "body" / uid).read_bytes() if f.name.endswith(".ref") else f.read_bytes()
                except OSError:
                    continue
            out[u] = box
        return out

    def journal(self) -> set[str]:
        """UIDLs in the multidrop UIDL journal (SPOOL/pop3.uidl, docs/inbound.md)."""
        try:
            text = (self.spool / "pop3.uidl").read_text("latin-1")
        except OSError:
            return set()
        return {w[2] for w in (ln.split(" ") for ln in text.splitlines()) if len(w) == 3}

    def leftovers(self) -> list[str]:
        return [f"{d}/{n}" for d in ("tmp", "new") for n in os.listdir(self.spool / d)]

    def close(self) -> None:
        try:
            if self.gw is not None:
                if self.gw.proc.poll() is None:
                    self.gw.stop()
        finally:
            try:
                if self.emu is not None:
                    self.emu.stop()
            finally:
                self.isp.stop()


@dataclass
class Ledger:
    """Every message the test sent, where it must end up, and whether it got 250."""

    dests: dict[str, list[str]] = field(default_factory=dict)  # tag -> ["user:bob", "ext:far@…", "dsn:alice"]
    acked: dict[str, bool] = field(default_factory=dict)  # tag -> 250 seen (False: no reply, or an error)

    def add(self, tag: str, rcpts: list[str], inbound: bool = False) -> None:
        out = []
        for r in rcpts:
            local, _, dom = r.partition("@")
            if dom == "office.test":
                out.append("user:" + local)
            elif r == REJECT:
                out.append("dsn:alice")
            else:
                out.append("ext:" + r)
        self.dests[tag] = out
        self.acked.setdefault(tag, False)


@dataclass
class Tally:
    losses: list[str] = field(default_factory=list)
    dup: dict[str, int] = field(default_factory=lambda: {"out": 0, "in": 0, "dsn": 0, "lan": 0, "md": 0})
    unjournaled: list[str] = field(default_factory=list)  # collected, still at the ISP, UIDL not journaled
    journaled_at_isp: int = 0  # collected, still at the ISP, journaled: the journal keeps it from coming twice
    unacked_present: int = 0
    where: dict[str, int] = field(default_factory=dict)


def account(office: Office, ledger: Ledger, pop3: Pop3Ledger, final: bool = False) -> Tally:
    """Find every copy of every message; a message that got 250 with no copy is a loss.

    Copies of (tag, destination): ISP held/ and maildrop UIDs and UIDs a POP3
    client took (local users); the ISP's Internet store and a queue record still
    pending for that address (remote); DSNs naming the tag (a refused recipient).
    More than one copy is a duplicate, counted by kind: "out" (at the ISP, or
    queued again: the dot was sent and its 250 lost), "in" (held mail the ISP sent
    again after the gateway committed it), "dsn", "lan" (a LAN message twice in
    one maildrop: never allowed), "md" (a message of the ISP's POP3 mailbox
    collected twice: the UIDL journal must prevent it).

    `unjournaled`: mailbox messages the office has (a maildrop, a POP3 client)
    that are still at the ISP with no UIDL journal line: the next call would
    fetch them again (a duplicate in the making)."""
    t = Tally()
    copies: dict[tuple[str, str], int] = {}

    def add(tag: str, dest: str, where: str) -> None:
        copies[(tag, dest)] = copies.get((tag, dest), 0) + 1
        t.where[where] = t.where.get(where, 0) + 1

    for rcpts, data in office.isp.store("held"):
        kind, tags = what(data)
        for r in rcpts:
            for tag in tags:
                add(tag, "user:" + r.partition("@")[0], "isp-held")
    at_isp = {}
    for uid, (rcpt, data) in office.isp.mailbox().items():
        kind, tags = what(data)
        for tag in tags:
            add(tag, "user:" + rcpt.partition("@")[0], "isp-mailbox")
            at_isp[(tag, "user:" + rcpt.partition("@")[0])] = uid
    for rcpts, data in office.isp.store("internet"):
        kind, tags = what(data)
        for r in rcpts:
            for tag in tags:
                add(tag, "ext:" + r, "isp-internet")
    for _mid, (pending, data) in office.queued().items():
        kind, tags = what(data)
        for r in pending:
            for tag in tags:
                add(tag, "dsn:alice" if r == REJECT else "ext:" + r, "queue")
    boxes = office.maildrops()
    have = set()  # (tag, user) the office has
    for u in USERS:
        held = dict(pop3.took[u])
        held.update(boxes[u])
        for uid, data in held.items():
            kind, tags = what(data)
            for tag in tags:
                add(tag, ("dsn:" if kind == "dsn" else "user:") + u, "maildrop" if uid in boxes[u] else "pop3-client")
                have.add((tag, "user:" + u))
        # RFC 1939: nothing the client did not delete (and then QUIT) is gone
        gone = pop3.seen[u] - set(boxes[u]) - pop3.may_be_gone[u]
        assert not gone, f"{u}: POP3 messages gone without DELE+QUIT: {sorted(gone)[:5]}"
    if at_isp:
        journaled = office.journal()
        t.unjournaled = sorted(f"{k[0]} ({uid})" for k, uid in at_isp.items() if k in have and uid not in journaled)
        t.journaled_at_isp = sum(1 for k, uid in at_isp.items() if k in have and uid in journaled)
    for tag, dests in ledger.dests.items():
        for dest in dests:
            n = copies.get((tag, dest), 0)
            if n == 0 and ledger.acked[tag]:
                t.losses.append(f"{tag} -> {dest}")
            if not ledger.acked[tag]:
                t.unacked_present += 1 if n else 0
            if n > 1:
                kind = ("dsn" if dest.startswith("dsn:") else "out" if dest.startswith("ext:")
                        else "in" if tag.startswith("Ti") else "md" if tag.startswith("Tp") else "lan")
                t.dup[kind] += n - 1
    if final:
        assert not office.queued(), "the queue did not drain"
        assert not office.isp.store("held"), "the ISP still holds mail"
        assert not office.isp.mailbox(), "mail left in the ISP's POP3 mailbox"
    return t


def wait_port_closed(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.05)
