"""A full flash (docs/reliability.md, item 2): the spool on a 3 MB tmpfs (root
mounts it; without root the test skips, with CI=true it fails) that fills
during a LAN submission and during a dial session's inbound flush.

SMTP answers 452 4.3.1 (at the dot, and at MAIL for a SIZE= that does not
fit); the ISP's flush gets 452 too, so the ISP keeps what did not fit; POP3
still serves and deletes; the gateway restarts on a flash with no room at all
(it used to die in recovery); the queue run still delivers, and so frees
space; nothing is corrupted or left in tmp/; and once space returns service
resumes with no operator: the next call brings the rest, and every message is
accounted for.
"""

from __future__ import annotations

import os
import smtplib
import subprocess

import pytest
from office_rig import Ledger, Office, Pop3Ledger, account

RESERVE = 256 * 1024


def free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(flash, leave: int) -> None:
    """Grow flash/filler until only `leave` octets are free (0: until ENOSPC)."""
    fd = os.open(flash / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while free(flash) > leave:
            os.write(fd, b"f" * min(65536, max(4096, free(flash) - leave)))
    except OSError as e:
        assert e.errno == 28, e
    finally:
        os.close(fd)


@pytest.fixture
def flash(tmp_path):
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("mounting a small tmpfs needs root")
        pytest.skip("mounting a small tmpfs needs root")
    d = tmp_path / "flash"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_full_flash_refuses_keeps_serving_and_resumes_by_itself(tmp_path, flash):
    import random

    rng = random.Random(3)
    o = Office(tmp_path, bps=1_000_000, spool=flash / "spool", over={"spool.reserve": RESERVE})
    led, pop3 = Ledger(), Pop3Ledger()
    try:
        for i in range(4):  # queued: 400 KB that the queue run will free
            led.add(f"To{i}", ["far@example.net"])
            o.submit(f"To{i}", ["far@example.net"], 100_000)
            led.acked[f"To{i}"] = True
        for i in range(3):  # waiting for bob's POP3 client
            led.add(f"Tl{i}", ["bob@office.test"])
            o.submit(f"Tl{i}", ["bob@office.test"], 50_000)
            led.acked[f"Tl{i}"] = True
        for i in range(8):  # held at the ISP: 480 KB
            led.add(f"Ti{i}", ["alice@office.test"])
            o.hold(f"Ti{i}", ["alice@office.test"], 60_000)
            led.acked[f"Ti{i}"] = True

        # 1. the flash fills during a submission: 452 4.3.1 after the dot, nothing half-written
        fill(flash, RESERVE + 40_000)
        led.add("Tg1", ["bob@office.test"])
        with pytest.raises(smtplib.SMTPDataError) as e:
            o.submit("Tg1", ["bob@office.test"], 200_000, declare_size=False)
        assert e.value.smtp_code == 452 and b"4.3.1" in e.value.smtp_error, e.value
        assert os.listdir(o.spool / "tmp") == []
        with smtplib.SMTP("127.0.0.1", o.gw_smtp, timeout=10) as s:  # RFC 1870: SIZE= that cannot fit
            s.ehlo()
            code, text = s.docmd("MAIL", "FROM:<alice@office.test> SIZE=500000")
            assert code == 452 and b"4.3.1" in text, (code, text)

        # 2. no room at all: a small message is refused too; POP3 still serves and deletes
        fill(flash, 0)
        led.add("Ts1", ["bob@office.test"])
        with pytest.raises(smtplib.SMTPException) as e2:
            o.submit("Ts1", ["bob@office.test"], 300, declare_size=False)
        assert "452" in str(e2.value) and "4.3.1" in str(e2.value), e2.value
        pop3.collect(o.gw.pop3_port, "bob", 1.0, rng)  # type: ignore[union-attr]
        assert sorted(pop3.may_be_gone["bob"]) and o.maildrops()["bob"] == {}, "POP3 did not delete on a full flash"
        fill(flash, 0)  # (and what the deletes freed is taken again)

        # 3. the gateway restarts on a flash with no room at all
        o.gw.kill()  # type: ignore[union-attr]
        o.gw.restart()  # type: ignore[union-attr]
        assert any("cannot save the boot counter" in x for x in o.command("log 20"))

        # 4. a call on the full flash: the queue run delivers (and frees 400 KB), the
        # ISP's flush fills the room that leaves and gets 452 for the rest, which it keeps
        c = o.call()
        assert int(c["msgs_out"]) == 4, c
        held_after = len(o.isp.store("held"))
        assert 0 < held_after < 8, (held_after, c)
        assert "452 4.3.1" in (tmp_path / "isp.out").read_text()
        assert os.listdir(o.spool / "tmp") == []
        t = account(o, led, pop3)
        assert not t.losses, t.losses

        # 5. space returns: service resumes by itself (the next call brings the rest)
        (flash / "filler").unlink()
        led.add("Tk1", ["bob@office.test"])
        o.submit("Tk1", ["bob@office.test"], 300)
        led.acked["Tk1"] = True
        o.call()
        assert o.isp.store("held") == []
        for u in ("alice", "bob"):
            pop3.collect(o.gw.pop3_port, u, 1.0, rng)  # type: ignore[union-attr]
        t = account(o, led, pop3, final=True)
        print(f"\n# full flash: 452 4.3.1 at the dot (200 KB into {RESERVE + 40_000} free) and at MAIL SIZE=; "
              f"POP3 deleted on a full flash; restart with 0 octets free; call 1: 4 out, "
              f"{8 - held_after} of 8 in, {held_after} kept by the ISP (452); call 2 brought the rest; "
              f"losses {len(t.losses)}, duplicates {t.dup}")
        assert not t.losses and sum(t.dup.values()) == 0, (t.losses, t.dup)
    finally:
        o.close()
