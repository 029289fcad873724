"""`dialgatectl report`: the cost log as one picture an office manager reads at a glance, plus a CSV.

Input is what the console gives (`stats csv`, and the queue's length now);
per local day: online minutes, messages sent and received, calls made and
failed, and the most mail that was waiting when a call began (the cost
record's `queued`). The CSV has the same figures, one line a day, so its sums
are the `stats` day totals.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNSET = "clock unset"  # costlog.UNSET: calls made before the board knew the time
CSV_FIELDS = ("day", "calls", "failed", "online_s", "online_min", "msgs_out", "msgs_in", "bytes_out", "bytes_in",
              "queued_max")


@dataclass
class Day:
    day: str
    calls: int = 0
    failed: int = 0
    online_s: int = 0
    msgs_out: int = 0
    msgs_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    queued_max: int = 0

    def row(self) -> dict[str, Any]:
        return {"day": self.day, "calls": self.calls, "failed": self.failed, "online_s": self.online_s,
                "online_min": round(self.online_s / 60, 1), "msgs_out": self.msgs_out, "msgs_in": self.msgs_in,
                "bytes_out": self.bytes_out, "bytes_in": self.bytes_in, "queued_max": self.queued_max}


@dataclass
class Report:
    gateway: str
    days: list[Day]
    queued_now: int
    daily_minutes: int = 0  # schedule.daily_minutes (0: no budget)
    left_out: int = field(default=0)  # calls older than the days shown


def build(calls: list[dict[str, Any]], days: int, today: dt.date, gateway: str = "", queued_now: int = 0,
          daily_minutes: int = 0) -> Report:
    """Per-day sums of `calls` (console_json.calls_csv rows) for the `days` local
    days up to `today` (or the newest day logged, if later), every day present
    even without a call; `days` 0: from the first day logged. Calls made before
    the clock was set come first, as a day named "clock unset"."""
    by_day: dict[str, Day] = {}
    for c in calls:
        label = c["date"][:10] if c.get("date") else UNSET
        d = by_day.setdefault(label, Day(label))
        d.calls += 1
        d.failed += 0 if c["ok"] else 1
        d.online_s += c["online_s"]
        d.msgs_out += c["msgs_out"]
        d.msgs_in += c["msgs_in"]
        d.bytes_out += c["bytes_out"]
        d.bytes_in += c["bytes_in"]
        d.queued_max = max(d.queued_max, c.get("queued", 0))
    dated = sorted(k for k in by_day if k != UNSET)
    last = max([today] + [dt.date.fromisoformat(k) for k in dated[-1:]])
    if days > 0:
        first = last - dt.timedelta(days=days - 1)
    else:
        first = dt.date.fromisoformat(dated[0]) if dated else last
    out = [by_day[UNSET]] if UNSET in by_day else []
    d = first
    while d <= last:
        out.append(by_day.get(d.isoformat(), Day(d.isoformat())))
        d += dt.timedelta(days=1)
    left_out = sum(by_day[k].calls for k in dated if dt.date.fromisoformat(k) < first)
    return Report(gateway, out, queued_now, daily_minutes, left_out)


def write_csv(report: Report, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        for d in report.days:
            w.writerow(d.row())


def _hm(seconds: int) -> str:
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min" if seconds >= 3600 else f"{seconds // 60} min"


def _headroom(ax: Any, top: float) -> None:
    """Room above the tallest bar for the legend."""
    ax.set_ylim(0, top * 1.35)


def draw(report: Report, path: Path) -> None:
    """Four panels over the days: online minutes (and the daily budget),
    messages sent/received, calls ok/failed, mail waiting at dial time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = report.days
    x = list(range(len(days)))
    labels = []
    for d in days:
        if d.day == UNSET:
            labels.append("no clock")
        else:
            day = dt.date.fromisoformat(d.day)
            labels.append(day.strftime("%a\n%d %b") if len(days) <= 21 else day.strftime("%d.%m"))
    calls = sum(d.calls for d in days)
    failed = sum(d.failed for d in days)
    online = sum(d.online_s for d in days)
    sent = sum(d.msgs_out for d in days)
    got = sum(d.msgs_in for d in days)
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2, 2]})
    span = f"{days[0].day} to {days[-1].day}" if days else ""
    fig.suptitle(f"dialgate {report.gateway}: {span}", fontsize=14, fontweight="bold", x=0.01, ha="left")
    fig.text(0.01, 0.935, f"{calls} calls ({failed} failed), {_hm(online)} online, {sent} messages sent, "
             f"{got} received; {report.queued_now} waiting now", fontsize=11, ha="left")
    ax = axes[0]
    ax.bar(x, [d.online_s / 60 for d in days], color="#1f77b4")
    if report.daily_minutes:
        ax.axhline(report.daily_minutes, color="#d62728", linestyle="--", linewidth=1)
        ax.text(len(days) - 0.5, report.daily_minutes, f" daily limit {report.daily_minutes} min",
                color="#d62728", va="bottom", ha="right", fontsize=9)
    ax.set_ylabel("online\nminutes")
    ax = axes[1]
    ax.bar([i - 0.2 for i in x], [d.msgs_out for d in days], width=0.4, color="#ff7f0e", label="sent")
    ax.bar([i + 0.2 for i in x], [d.msgs_in for d in days], width=0.4, color="#2ca02c", label="received")
    ax.set_ylabel("messages")
    _headroom(ax, max([d.msgs_out for d in days] + [d.msgs_in for d in days] + [1]))
    ax.legend(loc="upper left", fontsize=9, frameon=False, ncol=2)
    ax = axes[2]
    ok = [d.calls - d.failed for d in days]
    ax.bar(x, ok, color="#7f7f7f", label="calls ok")
    ax.bar(x, [d.failed for d in days], bottom=ok, color="#d62728", label="failed")
    ax.set_ylabel("calls")
    _headroom(ax, max([d.calls for d in days] + [1]))
    ax.legend(loc="upper left", fontsize=9, frameon=False, ncol=2)
    ax = axes[3]
    ax.plot(x, [d.queued_max for d in days], color="#9467bd", marker="o")
    ax.set_ylabel("waiting\nat dial")
    ax.set_ylim(bottom=0)
    for a in axes:
        a.grid(axis="y", alpha=0.3)
        a.spines[["top", "right"]].set_visible(False)
        a.yaxis.get_major_locator().set_params(integer=True)
    axes[-1].set_xticks(x, labels, fontsize=8)
    if report.left_out:
        fig.text(0.99, 0.005, f"{report.left_out} earlier call(s) not shown", ha="right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.935))
    fig.savefig(path, dpi=100)
    plt.close(fig)
