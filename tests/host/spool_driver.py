"""Mixed spool load for the crash test: runs until SIGKILLed, journaling what it did.

    python3 spool_driver.py FIRMWARE_DIR SPOOL ORACLE SEED LINKS
    micropython spool_driver.py FIRMWARE_DIR SPOOL ORACLE SEED 0

Runs on both runtimes (the firmware subset). Each operation is journaled to
ORACLE before it starts and again after it returned (flushed to the OS, so a
SIGKILL keeps it): B/C accept, X/Y expunge, D/R queue delivery. The test
(tests/host/test_spool_crash.py) restarts, recovers and checks against it.
"""

# ruff: noqa: UP031  (runs under MicroPython too: the firmware subset, %-formatting)

import random
import sys

sys.path.insert(0, sys.argv[1])

from dialgate import compat  # noqa: E402
from dialgate.delivery import Route  # noqa: E402
from dialgate.spool import Spool  # noqa: E402

USERS = ["u0", "u1", "u2", "u3", "u4"]


def body_lines(mid, n):
    """Message text: n numbered lines naming the id, then an END line (CRLF ends)."""
    for i in range(n):
        yield ("%s %06d the quick brown fox\r\n" % (mid, i)).encode()
    yield ("END %s\r\n" % mid).encode()


def main():
    firmware, root, oracle_path, seed, links = sys.argv[1:6]
    random.seed(int(seed))
    sp = Spool(root, 0, links=bool(int(links)))
    sp.recover()
    oracle = open(oracle_path, "a")

    def note(s):
        oracle.write(s + "\n")
        oracle.flush()

    while True:
        op = random.randint(0, 9)
        if op < 5:
            k = random.randint(1, 3)
            users = []
            while len(users) < k:
                u = USERS[random.randint(0, len(USERS) - 1)]
                if u not in users:
                    users.append(u)
            remote = random.randint(0, 3) == 0
            if random.randint(0, 3) == 0:
                users = users[:1]  # the single-maildrop rename path
            n = random.randint(0, 3000) if random.randint(0, 9) == 0 else random.randint(0, 200)
            w = sp.writer()
            note("B %s %d %s %d" % (w.id, n, ",".join(users), int(remote)))
            part = []
            for line in body_lines(w.id, n):
                part.append(line)
                if len(part) == 64:
                    w.write(b"".join(part))
                    part = []
            if part:
                w.write(b"".join(part))
            routes = [Route("local", users[0] + "@office.test", users)]
            if remote:
                routes.append(Route("remote", "far@isp.test", []))
            mid = w.commit("s@isp.test", routes)
            note("C %s" % mid)
        elif op < 8:
            u = USERS[random.randint(0, len(USERS) - 1)]
            md = sp.maildrops.open(u)
            try:
                msgs = md.messages()
                dele = [i for i in range(len(msgs)) if random.randint(0, 2) == 0]
                if dele:
                    ids = " ".join([msgs[i][0] for i in dele])
                    note("X %s %s" % (u, ids))
                    md.expunge(dele)
                    note("Y %s %s" % (u, ids))
            finally:
                md.close()
        else:
            due = sp.queue.due(compat.wall_time() + 10)
            if due:
                mid = due[random.randint(0, len(due) - 1)]
                rec = sp.queue.load(mid)
                for r in rec.rcpts:
                    r.state = "delivered"
                    r.attempts += 1
                    r.reply = "250 2.0.0 ok"
                sp.queue.save(rec)
                note("D %s" % mid)
                sp.queue.remove(mid)
                note("R %s" % mid)


main()
