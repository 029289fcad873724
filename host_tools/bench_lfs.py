"""Flash block reads per accepted message on littlefs: the spool's free-space
reading reused (`compat.FREE_REUSE_MS`, a board's behaviour) against statvfs at
every ask (the behaviour before), measured in the same run.

littlefs's statvfs walks the whole filesystem, so with mail stored it reads more
blocks than writing a message does, and SMTP asks twice a message (`has_room`
at MAIL, the budget at DATA). The spool runs under the MicroPython unix port on
a RAM block device shaped like a Pico W's filesystem (352 blocks of 4 KB) that
counts its reads; each message is a 3 KB one-recipient submission committed as
SMTP commits it. Block reads stand for time: on a board each is a flash read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import os, sys
sys.path[:0] = [ROOT + "/tests/fw", ROOT + "/firmware"]
from lfsdev import RamFlash
from dialgate import compat
from dialgate.spool import Spool
from dialgate.delivery import Route

class Counting(RamFlash):
    reads = 0
    def readblocks(self, n, buf, off=0):
        Counting.reads += 1
        RamFlash.readblocks(self, n, buf, off)

dev = Counting(blocks=352, block_size=4096)
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), "/fl")

def spool():
    sp = Spool("/fl/spool", 65536)
    sp.recover()
    return sp

sp = spool()
body = b"x" * 3000 + b"\r\n"
to = [Route("local", "u0@office.test", ["u0"])]
n = 0
def one():
    global n
    assert sp.has_room(len(body))
    w = sp.writer()
    w.write(body)
    w.commit("", to)
    n += 1
for stored in (0, 50, 100, 150, 200):
    while n < stored:
        one()
    image = bytearray(dev.data)  # both ways start from the same flash
    res = []
    for reuse in (0, 10000):
        if reuse:
            os.umount("/fl")
            dev.data[:] = image
            os.mount(os.VfsLfs2(dev), "/fl")
            sp = spool()
            n = stored
        compat.FREE_REUSE_MS = reuse
        Counting.reads = 0
        for _ in range(20):
            one()
        res.append(Counting.reads / 20)
    print("%d %d %d %d" % (stored, res[0], res[1], compat.disk_free("/fl") // 1024))
"""


def main(argv: list[str] | None = None) -> int:
    upy = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(upy), "-X", "heapsize=8M", "-c", f"ROOT = {str(ROOT)!r}\n" + SCRIPT],
                       capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        return 1
    print("littlefs (352 x 4 KB blocks), 3 KB messages, 20 each: flash block reads per accepted message")
    print("| messages stored | statvfs at every ask | reading reused | ratio | free after |")
    print("|---|---|---|---|---|")
    for line in r.stdout.split("\n"):
        if line.strip():
            stored, every, reused, left = (int(x) for x in line.split())
            print(f"| {stored} | {every:,} | {reused:,} | {reused / every:.2f}x | {left} KB |")
    print("(the reading is asked afresh within one more reserve, 64 KB, of the limit, and charged")
    print(" 8 KB a file besides its data: so near full every ask reads, as before)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
