"""The hostile-peer generator of tests/fw/test_fuzz_clients.py (and the ODMR
one in test_odmr_client.py): a seeded generator of our own, so both runtimes
see the same transcripts, and the batch that checks the heap stays flat."""

from dialgate import compat

ROUNDS = 120


class Rng:
    """xorshift32: the same transcripts on CPython and MicroPython."""

    def __init__(self, seed):
        self.x = seed or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def below(self, n):
        return self.next() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def octets(self, n):
        return bytes([self.next() & 0xFF for _ in range(n)])


def transcript(rng, words, steps=24, longest=2000, into=None):
    """Plausible replies, wrong ones, random octets, bare CR/LF and overlong lines.

    `into`: a bytearray made at import to build it in (returned as a memoryview,
    cut at its size): a fragmented 160K heap may have no fresh block that large."""
    out = []
    for _ in range(rng.below(steps) + 1):
        k = rng.below(10)
        if k < 6:
            out.append(rng.pick(words))
        elif k == 6:
            out.append(rng.octets(rng.below(120)))
        elif k == 7:
            out.append(rng.pick([b"\r", b"\n", b"\r\n", b"\x00", b".", b"\r\n.\r\n"]))
        elif k == 8:
            out.append(rng.pick([b"250-", b"+OK ", b"334 ", b"x"]) + b"y" * (600 + rng.below(longest)) + b"\r\n")
        else:
            out.append(rng.pick([b"999 what\r\n", b"25\r\n", b"2500 x\r\n", b"-ERR\r\n", b"+OK\r\n", b"\xff\xfe\r\n"]))
    if into is None:
        return b"".join(out)
    n = 0
    for part in out:
        k = min(len(part), len(into) - n)
        into[n : n + k] = part[:k]
        n += k
    return memoryview(into)[:n]


def whole_lines(out, end=b"\r\n"):
    assert out == b"" or out.endswith(end), out[-60:]


def heap():
    if compat.mem_free() < 0:
        return -1
    compat.gc_collect()
    return compat.mem_alloc()


def batch(name, seed, one):
    """`one(rng)` for ROUNDS transcripts; the heap after the batch must be
    where it was after the first (which loads the code and interns names)."""
    rng = Rng(seed)
    one(rng)
    before = heap()
    for _ in range(ROUNDS - 1):
        one(rng)
    after = heap()
    print("# %s: %d hostile transcripts; heap after the first %d, after all %d" % (name, ROUNDS, before, after))
    if before >= 0:
        assert after - before < 2048, (name, before, after)
