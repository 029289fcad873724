"""Crash consistency of the whole gateway (docs/reliability.md, item 1).

While LAN clients submit mail (local, remote, fan-out to both, and to a
recipient the ISP refuses), the ISP holds inbound mail for office.test, a POP3
client retrieves and deletes, and dial sessions run one after another (queue
run, ETRN, the ISP's flush back over the modem line, linger; or, in the odmr
run, ATRN on the gateway's own connection and the ISP delivering into it; in
the pop3 run, besides the ETRN, the Internet also writes into the ISP's POP3
multidrop mailbox, which every call collects after the ETRN: RETR, commit,
UIDL journaled, DELE, QUIT), the gateway process is SIGKILLed at random
moments: 30 times (`make test`: 10 with ETRN, 10 with ODMR, 10 with ETRN and
multidrop), 300 with DIALGATE_SOAK=1 (`make soak`: 100 each). After each
restart (recovery done), with the load paused: every message that got 250 (or
was put in the ISP's mailbox) has a copy in a maildrop, the queue, the ISP
(held, in its mailbox, or delivered), a POP3 client, or a DSN to its sender;
nothing a POP3 client did not QUIT after deleting is gone; tmp/ and new/ are
empty. Finally the office drains (calls until nothing is queued, held or in
the mailbox, every maildrop fetched) and each message is counted: losses must
be 0; duplicates are counted by kind and must come only from "reply lost
after the commit"; a mailbox message collected twice ("md") must not happen
at all (the UIDL journal is written before DELE).

Run with `-s` for the figures.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from office_rig import REJECT, SOAK, USERS, Ledger, Office, Pop3Ledger, account


class Load:
    """Worker threads: LAN submitter, ISP injector, POP3 client, dialler. Each
    does one operation at a time under its own lock, so the main thread can
    pause them all (take every lock) while it checks the spool."""

    def __init__(self, office: Office, ledger: Ledger, pop3: Pop3Ledger, seed: int) -> None:
        self.o, self.ledger, self.pop3 = office, ledger, pop3
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.go = threading.Event()
        self.n = 0
        self.errors: list[str] = []
        # (work, seconds between two of its operations)
        self.workers = [(self.submit, 0.2), (self.inject, 0.6), (self.collect, 0.3), (self.dial, 1.5)]
        if office.isp.pop3_port:
            self.workers.append((self.mailbox, 0.6))
        self.locks = [threading.Lock() for _ in self.workers]
        self.threads = [threading.Thread(target=self.loop, args=(f, gap, lk, random.Random(self.rng.random())),
                                         daemon=True)
                        for (f, gap), lk in zip(self.workers, self.locks, strict=True)]
        for th in self.threads:
            th.start()

    def tag(self, kind: str) -> str:
        self.n += 1
        return f"T{kind}{self.n}"

    def loop(self, work, gap: float, lock: threading.Lock, rng: random.Random) -> None:
        while not self.stop.is_set():
            if not self.go.wait(0.05):
                continue
            with lock:
                if not self.go.is_set():
                    continue
                try:
                    work(rng)
                except (OSError, EOFError) as e:  # the gateway died under us: expected
                    self.errors.append(type(e).__name__)
                except Exception as e:  # smtplib/poplib protocol errors after a cut  # noqa: BLE001
                    self.errors.append(type(e).__name__)
            time.sleep(rng.uniform(0.05, gap))

    def submit(self, rng: random.Random) -> None:
        k = rng.random()
        if k < 0.45:
            tag, rcpts = self.tag("o"), ["far@example.net"]
        elif k < 0.65:
            tag, rcpts = self.tag("l"), ["bob@office.test"]
        elif k < 0.85:
            tag, rcpts = self.tag("m"), ["bob@office.test", "carol@office.test", "far2@example.net"]
        else:
            tag, rcpts = self.tag("r"), [REJECT]
        size = rng.choice([400, 900, 2500]) if rng.random() < 0.9 else 24000
        self.ledger.add(tag, rcpts)
        self.o.submit(tag, rcpts, size)
        self.ledger.acked[tag] = True  # sendmail returned: the gateway said 250 to the dot

    def inject(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            return  # the Internet writes to the office at half the LAN's rate
        tag = self.tag("i")
        rcpts = rng.choice([["alice@office.test"], ["bob@office.test"], ["alice@office.test", "carol@office.test"]])
        self.ledger.add(tag, rcpts, inbound=True)
        self.o.hold(tag, rcpts, rng.choice([500, 1500, 6000]))
        self.ledger.acked[tag] = True  # held by the ISP (which is never killed)

    def mailbox(self, rng: random.Random) -> None:
        tag = self.tag("p")
        rcpts = rng.choice([["alice@office.test"], ["bob@office.test"], ["alice@office.test", "carol@office.test"]])
        self.ledger.add(tag, rcpts, inbound=True)
        self.o.mail_to_mailbox(tag, rcpts, rng.choice([500, 1500, 6000]) if rng.random() < 0.9 else 30000)
        self.ledger.acked[tag] = True  # in the ISP's mailbox (the ISP is never killed)

    def collect(self, rng: random.Random) -> None:
        self.pop3.collect(self.o.gw.pop3_port, rng.choice(USERS), 0.7, rng)  # type: ignore[union-attr]

    def dial(self, rng: random.Random) -> None:
        self.o.command("dial")  # a call now, or right after the one in progress

    def pause(self) -> None:
        self.go.clear()
        for lk in self.locks:
            lk.acquire()
        for lk in self.locks:
            lk.release()

    def close(self) -> None:
        self.stop.set()
        self.go.clear()
        for th in self.threads:
            th.join(10)


@pytest.mark.parametrize("ask", ["etrn", "odmr", "pop3"])
def test_sigkill_the_whole_gateway_under_load(tmp_path, ask):
    kills = 100 if SOAK else 10
    rng = random.Random({"etrn": 12, "odmr": 13, "pop3": 14}[ask])
    office = Office(tmp_path, bps=1_000_000, odmr=ask == "odmr", pop3=ask == "pop3")
    ledger, pop3 = Ledger(), Pop3Ledger()
    load = Load(office, ledger, pop3, 99)
    t0 = time.monotonic()
    recovered = {"tmp": 0, "fanout": 0, "orphans": 0}
    phases: dict[str, int] = {}
    spent = {"pause": 0.0, "account": 0.0, "drain": 0.0}
    unjournaled: list[str] = []  # pop3: collected, still at the ISP, UIDL not journaled (would come twice)
    saved = 0  # pop3: collected, still at the ISP after a kill, journaled (the next call only DELEs it)
    try:
        for k in range(kills):
            load.go.set()
            if ask == "pop3" and k % 2:
                # every other kill aimed at the collection: once the gateway logged in
                # to the ISP mailbox, somewhere in its RETR / commit / journal / DELE / QUIT
                logins = (tmp_path / "isp.out").read_text().count("isp: POP3 login")
                deadline = time.monotonic() + 15
                while (tmp_path / "isp.out").read_text().count("isp: POP3 login") == logins \
                        and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.5))
            else:
                time.sleep(rng.uniform(0.2, 2.5))
            calling = office.modem()["state"]
            phases[calling] = phases.get(calling, 0) + 1
            office.gw.kill()  # type: ignore[union-attr]
            t1 = time.monotonic()
            load.pause()
            spent["pause"] += time.monotonic() - t1
            office.gw.restart()  # type: ignore[union-attr]
            for line in office.command("log 30"):
                if "spool recovery:" in line:
                    for k in recovered:
                        m = line.split(f'"{k}": ', 1)
                        if len(m) == 2:
                            recovered[k] += int(m[1].split(",")[0].split("}")[0])
            t1 = time.monotonic()
            t = account(office, ledger, pop3)
            spent["account"] += time.monotonic() - t1
            assert not t.losses, f"lost after a SIGKILL: {t.losses[:10]}"
            unjournaled += t.unjournaled
            saved += t.journaled_at_isp
            assert t.dup["lan"] == 0, "a LAN message twice in a maildrop"
            assert not office.leftovers(), office.leftovers()
        load.close()
        t1 = time.monotonic()
        calls = office.drain(pop3, rng)
        spent["drain"] = time.monotonic() - t1
        t = account(office, ledger, pop3, final=True)
    finally:
        load.close()
        office.close()
    isp_log = (tmp_path / "isp.out").read_text()
    md = (f"multidrop: {isp_log.count('isp: POP3 login')} logins to the ISP mailbox, "
          f"{isp_log.count('isp: POP3 session cut')} cut by a kill or the drop before QUIT; "
          f"{saved} copies collected but still at the ISP at a restart, journaled; ") if ask == "pop3" else ""
    acked = sum(1 for v in ledger.acked.values() if v)
    print(f"\n# whole-gateway SIGKILL ({ask}): {kills} kills in {time.monotonic() - t0:.0f}s (modem state at the kill: "
          f"{phases}); {len(ledger.dests)} messages sent, {acked} got 250, {len(ledger.dests) - acked} cut before "
          f"the 250 ({t.unacked_present} of those delivered anyway); recovery removed {recovered['tmp']} tmp "
          f"files, finished {recovered['fanout']} fan-outs, freed {recovered['orphans']} bodies; "
          f"{pop3.sessions} POP3 sessions ({pop3.quits_ok} QUIT +OK); {md}drain: {calls} calls; copies: {t.where}; "
          f"losses {len(t.losses)}; duplicates (reply lost after the commit): {t.dup}; "
          f"mailbox copies unjournaled at a restart: {len(unjournaled)} {unjournaled[:5]}; seconds {spent}")
    assert not t.losses, t.losses[:10]
    assert t.dup["lan"] == 0
    # md: the UIDL journal keeps a collected message from coming twice; a kill between
    # its spool commit and its "C" line is found by the next listing through the "P"
    # line (docs/inbound.md). Left: a LAN client deleting that copy before the next
    # call. Such a copy shows at the restart at the office, still at the ISP, without
    # a "C" line (`unjournaled`, per recipient): a duplicate, never a loss. A
    # duplicate not announced that way is a bug.
    assert t.dup["md"] <= len(unjournaled), \
        f"a message of the ISP's POP3 mailbox collected twice: {t.dup['md']} copies, {unjournaled} unjournaled"
    assert acked >= kills * 2, "the load hardly ran"
    if ask == "pop3":
        assert t.where.get("isp-mailbox", 0) == 0 and sum(1 for tag in ledger.dests if tag.startswith("Tp")) >= kills, \
            "the multidrop load hardly ran"
