"""The console's text replies as JSON, parsed on the host (the firmware stays small).

Each parser takes the reply lines without the final OK and returns a dict; the
formats are the ones docs/console.md documents, and tests/host/test_dialgatectl.py
holds them to a running gateway.
"""

from __future__ import annotations

import csv
import re
from typing import Any

_SPAN = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(span: str) -> int | None:
    """"3d04h", "2h05m", "7m", "14m05s", "40s" -> seconds; None for "?" or anything else."""
    m = _SPAN.match(span.strip())
    if not m or not span.strip():
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def status(lines: list[str]) -> dict[str, Any]:
    """`status`: every `key: value` line as a string, keys with `_` for spaces,
    plus the numbers an alarm script wants: uptime_s, heap_used, heap_free,
    connections, max_connections, spool_free."""
    out: dict[str, Any] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            out[key.replace(" ", "_")] = value
    if m := re.match(r"(\d+)s$", out.get("uptime", "")):
        out["uptime_s"] = int(m.group(1))
    if m := re.match(r"used (-?\d+) free (-?\d+)", out.get("heap", "")):
        out["heap_used"], out["heap_free"] = int(m.group(1)), int(m.group(2))
    if m := re.match(r"(\d+) of (\d+)", out.get("connections", "")):
        out["connections_open"], out["max_connections"] = int(m.group(1)), int(m.group(2))
    if m := re.match(r"\S+ free (-?\d+)", out.get("spool", "")):
        out["spool_free"] = int(m.group(1))
    return out


_DAY_FIELDS = ("calls", "failed", "online_s", "bytes_in", "bytes_out", "msgs_in", "msgs_out")


def stats(lines: list[str]) -> dict[str, Any]:
    """`stats`: {"days": [{"day", "calls", "failed", "online_s", "bytes_in",
    "bytes_out", "msgs_in", "msgs_out"}...], "delivered", "deferred",
    "bounced", "queued", "online_sessions" (numbers), "last_run" (text)}."""
    out: dict[str, Any] = {"days": []}
    for line in lines:
        m = re.match(r"(\d{4}-\d\d-\d\d|clock unset)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", line)
        if m:
            g = m.groups()
            day: dict[str, Any] = {"day": g[0]}
            nums = [int(g[1]), int(g[2]), seconds(g[3]) or 0, int(g[4]), int(g[5]), int(g[6]), int(g[7])]
            day.update(zip(_DAY_FIELDS, nums, strict=True))
            out["days"].append(day)
            continue
        key, sep, value = line.partition(": ")
        if sep and not line.startswith("("):
            key = key.replace(" ", "_")
            out[key] = int(value) if value.isdigit() else value
    return out


_QUEUE_LINE = re.compile(
    r"(?P<id>\S+)\s+(?P<age>\S+)\s+(?P<size>\d+) <(?P<sender>[^>]*)> -> <(?P<rcpt>[^>]*)>"
    r"(?: and (?P<more>\d+) more)?, (?P<pending>\d+)/(?P<rcpts>\d+) pending, (?P<tries>\d+) tries, "
    r"next (?P<next>.*?)(?:; last: (?P<last_error>.*))?$")


def queue_list(lines: list[str]) -> dict[str, Any]:
    """`queue list`: {"messages": [{"id", "age" (text), "age_s" (or null), "size",
    "sender", "rcpt" (the first), "rcpts", "pending", "tries", "next",
    "last_error"}...], "count"} (count: every queued message, also those past
    the 200 lines listed)."""
    msgs = []
    count = 0
    for line in lines:
        m = _QUEUE_LINE.match(line)
        if m:
            d = m.groupdict()
            msgs.append({"id": d["id"], "age": d["age"], "age_s": seconds(d["age"]), "size": int(d["size"]),
                         "sender": d["sender"], "rcpt": d["rcpt"], "rcpts": int(d["rcpts"]),
                         "pending": int(d["pending"]), "tries": int(d["tries"]), "next": d["next"],
                         "last_error": d["last_error"] or ""})
        elif m := re.match(r"(\d+) message\(s\) queued$", line):
            count = int(m.group(1))
    return {"messages": msgs, "count": count}


def queue_show(lines: list[str]) -> dict[str, Any]:
    """`queue show ID`: the `key: value` lines, "rcpts": [{"address", "state",
    "tries", "reply"}], "headers": [lines as sent, folded ones kept apart]."""
    out: dict[str, Any] = {"rcpts": [], "headers": []}
    in_headers = False
    for line in lines:
        if in_headers:
            out["headers"].append(line[2:])
            continue
        if line == "headers:":
            in_headers = True
            continue
        if m := re.match(r"rcpt <([^>]*)> (\w+), (\d+) tries(?:: (.*))?$", line):
            out["rcpts"].append({"address": m.group(1), "state": m.group(2), "tries": int(m.group(3)),
                                 "reply": m.group(4) or ""})
            continue
        key, sep, value = line.partition(": ")
        if sep:
            out[key.replace(" ", "_")] = int(value) if value.isdigit() else value
    return out


_CSV_INTS = ("n", "start", "speed", "online_s", "bytes_in", "bytes_out", "msgs_in", "msgs_out", "ok", "queued")


def calls_csv(lines: list[str]) -> list[dict[str, Any]]:
    """`stats csv` -> one dict per call, numbers as numbers, `ok` as a boolean."""
    rows = []
    for row in csv.DictReader(lines):
        d: dict[str, Any] = dict(row)
        for k in _CSV_INTS:
            if k in d:
                d[k] = int(d[k] or 0)
        d["ok"] = bool(d.get("ok"))
        rows.append(d)
    return rows


def as_json(command: str, lines: list[str]) -> Any:
    """The reply to `command` (its words) as a JSON-able value: a parsed form for
    status, stats, stats calls [N] (from stats csv), stats csv, queue list and queue
    show; {"lines": [...]} for any other command."""
    words = command.split()
    if words == ["status"]:
        return status(lines)
    if words == ["stats"]:
        return stats(lines)
    if words == ["stats", "csv"]:
        return {"calls": calls_csv(lines)}
    if words == ["queue", "list"]:
        return queue_list(lines)
    if words[:2] == ["queue", "show"]:
        return queue_show(lines)
    return {"lines": lines}
