"""bench_lfs (make bench): the littlefs block-read figure runs, and with mail
stored a board's reused free-space reading reads fewer blocks per message than
asking statvfs every time (docs/storage.md, "Free-space guard")."""

from __future__ import annotations

from host_tools import bench_lfs


def test_the_reused_reading_reads_fewer_blocks_once_mail_is_stored(capsys) -> None:
    assert bench_lfs.main([]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    figures = [(int(r[0]), int(r[1].replace(",", "")), int(r[2].replace(",", ""))) for r in rows[1:]]
    assert [f[0] for f in figures] == [0, 50, 100, 150, 200], figures
    for stored, every, reused in figures:
        assert 0 < reused <= every, (stored, every, reused)
    assert all(reused < every / 2 for stored, every, reused in figures if stored in (100, 150)), figures
