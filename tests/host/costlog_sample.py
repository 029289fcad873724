"""A realistic cost log for an office's last two weeks, written with the firmware's own CostLog.

An office that calls hourly 08:00-18:00 on weekdays plus once at 22:00, at noon
on weekends; mail arrives through the day, a call sends what waited and
fetches what the ISP held; now and then the line is busy (the mail waits for
the next call). `tests/host/test_dialgatectl.py` reports on it, and

    .venv/bin/python tests/host/costlog_sample.py docs/report-sample.png

draws the sample picture in docs/ from it through a real gateway process.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent.parent / "firmware", HERE.parent.parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

UTC_OFFSET = 60  # minutes: a Central European office in winter
# Gateway settings the sample needs: two weeks of records (~250 octets each)
# pass the default 16 KB bound, and a daily budget for the picture's limit line.
CONFIG = {"session.cost_log_bytes": 65536, "schedule.utc_offset": UTC_OFFSET, "schedule.daily_minutes": 30}


def records(days: int = 14, now: dt.datetime | None = None, seed: int = 13) -> list[dict]:
    """Cost records (dicts as session.py writes them) for the `days` local days
    up to `now` (UTC), no call later than an hour before `now`."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    off = dt.timedelta(minutes=UTC_OFFSET)
    today = (now + off).date()
    out: list[dict] = []
    waiting = 0
    for k in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=k)
        weekday = day.weekday() < 5
        slots = [(h, "window") for h in range(8, 19)] + [(22, "time")] if weekday else [(12, "time")]
        for hour, trigger in slots:
            local = dt.datetime.combine(day, dt.time(hour, rng.randint(0, 3)), dt.UTC)
            start = local - off
            if start > now - dt.timedelta(hours=1):
                break
            waiting += rng.randint(0, 6 if weekday and hour < 18 else 1)
            rec = {"n": len(out) + 1, "start": int(start.timestamp()), "trigger": trigger, "why": f"{trigger} slot",
                   "queued": waiting}
            if rng.random() < 0.07:
                rec.update(dials=["BUSY"] * 3, speed=0, online=0, end="BUSY", ok=False, ask="")
            else:
                speed = rng.choice([33600, 31200, 28800, 28800, 26400])
                got = rng.randint(0, 8 if weekday else 2)
                out_b = sum(rng.randint(2000, 40000) for _ in range(waiting))
                in_b = sum(rng.randint(2000, 60000) for _ in range(got))
                online = 25 + (out_b + in_b) * 10 // speed + 10  # dial, transfer at the line rate, idle hang-up
                rec.update(dials=[f"CONNECT {speed}/ARQ/V34/LAPM/V42BIS"], speed=speed, online=online,
                           bytes_out=out_b, bytes_in=in_b, msgs_out=waiting, msgs_in=got, ask="ETRN 250",
                           end="idle", ok=True)
                waiting = 0
            out.append(rec)
    return out


def write(spool: Path, recs: list[dict]) -> None:
    from dialgate.costlog import CostLog

    spool.mkdir(parents=True, exist_ok=True)
    log = CostLog(str(spool / "calls.log"), str(spool / "calls.log.tmp"), CONFIG["session.cost_log_bytes"])
    for r in recs:
        assert log.append(r)


def main(out: str) -> int:
    import tempfile

    from gateway import Gateway
    from host_tools import dialgatectl

    with tempfile.TemporaryDirectory() as d:
        write(Path(d) / "spool", records())
        gw = Gateway(Path(d), dict(CONFIG, **{"link.type": "always-on"}))
        try:
            return dialgatectl.main(["--host", f"127.0.0.1:{gw.console_port}", "report", "--out", out,
                                     "--csv", str(Path(d) / "report.csv")])
        finally:
            gw.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/report-sample.png"))
