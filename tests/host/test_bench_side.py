"""`make bench`'s side-by-side harness (host_tools/bench_side.py) on tiny sizes, one
repetition: proves it installs and starts both sides, runs every load, and writes
its table. No figure is asserted (benchmarks print ratios, tests never time)."""

from __future__ import annotations

from host_tools import bench_side, isp_dovecot, isp_postfix


def test_bench_side_small_run_writes_the_table(tmp_path):
    isp_postfix.require()
    isp_dovecot.require()
    out = tmp_path / "performance.md"
    assert bench_side.main(["--small", "--reps", "1", "--out", str(out)]) == 0
    text = out.read_text()
    for load in ("SMTP 8 clients x 4 KB, smtplib", "SMTP 8 clients x 100 KB, smtp-source",
                 "clients connecting at once", "POP3 RETR 1 MB", "POP3 login + UIDL + LIST", "memory idle: PSS"):
        assert load in text, load
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "msg/s" in ln]
    assert len(rows) == 7 and all("nan" not in r and "| 0 |" not in r for r in rows), rows
    assert "Machine: " in text and " cores, Linux " in text
    floor = [ln for ln in text.splitlines() if "against the CPython asyncio floor" in ln]
    assert len(floor) == 2 and all("nan" not in f and " 0 msg/s" not in f for f in floor), floor
    assert "smtp-source: dialgate " in floor[0] and "x Postfix)" in floor[0], floor[0]
