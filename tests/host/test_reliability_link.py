"""Link faults in every phase of a dial session (docs/reliability.md, item 3).

One office (emulated ISP, emulated modem, a gateway process) lives through a
fault in each phase, one call each: the modem answers BUSY, NO DIALTONE, NO
ANSWER, NO CARRIER, garbage around its result codes, or nothing at all; the
carrier goes right after CONNECT; and, with the ISP stopped at the exact moment
(isp_emulator's XFAULT) before the test drops the carrier, during outbound DATA,
between the final dot and its 250, during ETRN, half-way through a held
message coming in, and half-way through a POP3 multidrop RETR (the mailbox's
last message: the ones before it committed, journaled and DELEd, but no QUIT,
so the ISP still has them all); and the ISP closing the connection in the
middle of its 250.
After each faulty call: the call is over and recorded as failed (the operator's
view), the modem is back in command state and the gateway dropped DTR (counted
on the emulator's control lines), and every message is still somewhere (the
ledger of office_rig). The next call, with no fault, finishes the work. At the
end: losses 0, and duplicates only where a 250 was lost after the commit (none
from the POP3 mailbox: its UIDL journal prevents them).

Every call also collects the ISP's POP3 multidrop mailbox (after the ETRN).
PPP that never comes up is a firmware-level test (tests/fw/test_link_ppp.py:
the emulated link has no PPP).
"""

from __future__ import annotations

import random
import time

from office_rig import SOAK, Ledger, Office, Pop3Ledger, account

# (scenario for the modem, the end the cost record must show)
DIAL_FAULTS = [
    ("busy", "busy"),
    ("no-dialtone", "no-dialtone"),
    ("no-answer", "no-answer"),
    ("no-carrier", "no-carrier"),
    ("no-carrier+garbage", "no-carrier"),
    ("silent", "silent"),
    ("dead", "no-modem"),
    ("answer+drop-after=0.5", "carrier lost"),  # carrier lost just after CONNECT (0.5 s x time scale)
]
# (ISP fault, drop the carrier when it fires?, what the phase is)
ONLINE_FAULTS = [
    ("stall-data", True, "outbound DATA"),
    ("stall-dot", True, "between the dot and its 250"),
    ("stall-etrn", True, "ETRN"),
    ("stall-inbound", True, "inbound DATA"),
    ("stall-pop3-retr", True, "POP3 multidrop RETR"),
    ("close-dot", False, "the ISP closes mid-reply"),
]


def work(o: Office, led: Ledger, n: int, size: int) -> None:
    """Queue `n` outbound messages, have the ISP hold `n` for the office and put
    `n` in its POP3 mailbox."""
    for _ in range(n):
        k = len(led.dests)
        led.add(f"To{k}", ["far@example.net"])
        o.submit(f"To{k}", ["far@example.net"], size)
        led.acked[f"To{k}"] = True
        led.add(f"Ti{k}", ["alice@office.test"])
        o.hold(f"Ti{k}", ["alice@office.test"], size)
        led.acked[f"Ti{k}"] = True
        led.add(f"Tp{k}", ["alice@office.test"])
        o.mail_to_mailbox(f"Tp{k}", ["alice@office.test"], size)
        led.acked[f"Tp{k}"] = True


def hung_up(o: Office, before: int, what: str) -> int:
    """The modem is idle and the gateway dropped DTR since `before`; returns the new count."""
    deadline = time.monotonic() + 5
    while True:
        m = o.modem()
        if (m["state"] == "command" and int(m["dtr_drops"]) > before) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert m["state"] == "command", (what, m)
    assert int(m["dtr_drops"]) > before, f"{what}: no DTR drop on the control lines ({m})"
    assert any(x.startswith("link: down") for x in o.command("status")), what
    return int(m["dtr_drops"])


def test_a_fault_in_every_phase_ends_the_call_hangs_up_and_the_next_call_finishes(tmp_path):
    rounds = 4 if SOAK else 1
    rng = random.Random(5)
    o = Office(tmp_path, bps=200_000, over={"modem.connect_timeout": 2}, pop3=True)
    led, pop3 = Ledger(), Pop3Ledger()
    seen = []
    journaled = 0  # after the RETR fault: collected, still at the ISP, journaled
    dtr = int(o.modem()["dtr_drops"])
    try:
        for _ in range(rounds):
            work(o, led, 2, 800)
            for scenario, end in DIAL_FAULTS:
                o.emu.control_command("SCENARIO " + scenario)  # type: ignore[union-attr]
                c = o.call()
                assert c["end"] == end and c["ok"] == "0", (scenario, c)
                dtr = hung_up(o, dtr, scenario)
                assert not account(o, led, pop3).losses, scenario
                seen.append(scenario)
            o.emu.control_command("SCENARIO answer")  # type: ignore[union-attr]
            o.command("queue retry all")  # (the drop after CONNECT deferred what it had started)
            c = o.call()
            assert c["ok"] == "1" and not o.queued() and not o.isp.store("held") and not o.isp.mailbox(), c
            dtr = hung_up(o, dtr, "good call")
            for fault, drop, phase in ONLINE_FAULTS:
                work(o, led, 3, 8_000 if fault == "stall-data" else 2_000)
                o.isp.fault(fault)
                n = o.last_call()
                o.command("dial")
                deadline = time.monotonic() + 30
                while o.isp.fault_hit() != fault:
                    assert time.monotonic() < deadline, f"{fault} never fired:\n" + "\n".join(o.command("log 30"))
                    time.sleep(0.02)
                if drop:
                    o.emu.control_command("DROP")  # type: ignore[union-attr]
                c = o.call_after(n, deadline + 30 - time.monotonic())
                if drop:
                    assert c["end"] == "carrier lost" and c["ok"] == "0", (phase, c)
                dtr = hung_up(o, dtr, phase)
                t = account(o, led, pop3)
                assert not t.losses, (phase, t.losses)
                assert not t.unjournaled, (phase, t.unjournaled)
                if fault == "stall-pop3-retr":  # the two before the cut: in alice's maildrop, still at the ISP
                    assert t.journaled_at_isp == 2, (phase, t.journaled_at_isp)
                    journaled += t.journaled_at_isp
                seen.append(phase)
                # the next call, with no fault, finishes the work (a message the ISP cut
                # mid-reply waits queue.retry_interval like any failed try: retry it now)
                o.command("queue retry all")
                c = o.call()
                if c["ok"] != "1":
                    print("\n".join(o.command("log 60")))
                assert c["ok"] == "1", (phase, c)
                assert not o.queued() and not o.isp.store("held") and not o.isp.mailbox(), (phase, o.queued().keys(), c)
                assert account(o, led, pop3).dup["md"] == 0, phase
                dtr = hung_up(o, dtr, phase + ", next call")
                pop3.collect(o.gw.pop3_port, "alice", 1.0, rng)  # type: ignore[union-attr]
        t = account(o, led, pop3, final=True)
    finally:
        o.close()
    print(f"\n# link faults: {len(seen)} faulty calls ({', '.join(seen[:len(DIAL_FAULTS) + len(ONLINE_FAULTS)])}), "
          f"each hung up with DTR dropped, each followed by a call that finished the work; "
          f"{len(led.dests)} messages, losses {len(t.losses)}, duplicates (dot sent, 250 lost) {t.dup}; "
          f"RETR cut: {journaled} collected copies still at the ISP, journaled, deleted by the next call")
    assert not t.losses
    # out: the stall-dot and close-dot messages (committed at the ISP, 250 never seen), and
    # at most one whose 250 was on the line when the carrier went just after CONNECT
    assert t.dup["lan"] == 0 and t.dup["in"] <= rounds and t.dup["out"] <= 3 * rounds, t.dup
    assert t.dup["md"] == 0, t.dup
