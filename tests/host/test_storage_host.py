"""CPython-side storage checks: PBKDF2 hashes cross runtimes both ways; listing a 10,000-message maildrop."""

from __future__ import annotations

import builtins
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FIRMWARE = ROOT / "firmware"
UPY = Path(sys.executable).parent / "micropython"
sys.path.insert(0, str(FIRMWARE))

from dialgate import compat  # noqa: E402
from dialgate.delivery import Route  # noqa: E402
from dialgate.spool import Spool  # noqa: E402
from dialgate.users import UserStore, hash_password, verify_password  # noqa: E402


def upy(code: str) -> str:
    if not UPY.exists():
        pytest.skip("no micropython in the venv (make venv)")
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\n" + code
    r = subprocess.run([str(UPY), "-X", "heapsize=128K", "-c", prog], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_micropython_pbkdf2_is_its_own_code():
    # The point of the cross test: MicroPython has no pbkdf2_hmac, so compat's HMAC runs there.
    assert upy("import hashlib\nprint(hasattr(hashlib, 'pbkdf2_hmac'))") == "False"


def test_hash_on_cpython_verify_on_micropython(tmp_path):
    st = UserStore(str(tmp_path / "users.json"), apop=False, iterations=4096)
    st.add("alice", "Cr0ss-Runtime!")
    st.add("bob", "x" * 100)  # longer than the 64-octet HMAC block
    out = upy(
        "from dialgate.users import UserStore\n"
        f"st = UserStore({str(tmp_path / 'users.json')!r})\n"
        "print(st.check_password('alice', 'Cr0ss-Runtime!'), st.check_password('alice', 'cr0ss-Runtime!'),"
        " st.check_password('bob', 'x' * 100), st.check_password('bob', 'x' * 99))\n"
    )
    assert out == "True False True False"


def test_hash_on_micropython_verify_on_cpython():
    out = upy(
        "from dialgate.users import hash_password\n"
        "print(hash_password('M1cro-Python', 3000))\n"
        "print(hash_password('p' * 70, 1000, b'fixed-salt-16oct'))\n"
    )
    h1, h2 = out.splitlines()
    assert h1.startswith("pbkdf2-sha256$3000$")
    assert verify_password(h1, "M1cro-Python") and not verify_password(h1, "M1cro-PythoN")
    assert h2 == hash_password("p" * 70, 1000, b"fixed-salt-16oct")


def test_pbkdf2_timing_per_runtime():
    """Not asserted: what a login costs (docs/storage.md quotes it)."""
    t = time.perf_counter()
    compat.pbkdf2_sha256(b"pw", b"salt" * 4, 10000)
    cp = (time.perf_counter() - t) * 1000
    ms = upy(
        "import time\nfrom dialgate import compat\nt = time.ticks_ms()\n"
        "compat.pbkdf2_sha256(b'pw', b'salt' * 4, 10000)\nprint(time.ticks_diff(time.ticks_ms(), t))\n"
    )
    print(f"\n# PBKDF2-SHA256 10,000 iterations: CPython {cp:.1f} ms, MicroPython unix port {ms} ms")


@pytest.mark.parametrize("links", [True, False])
def test_list_10000_messages(tmp_path, links):
    sp = Spool(str(tmp_path / "spool"), 0, links=links)
    sp.recover()
    n = 10000
    t = time.perf_counter()
    body = b"Subject: x\r\n\r\n" + b"y" * 300 + b"\r\n"
    for i in range(n):
        w = sp.writer()
        w.write(body)
        users = ["alice"] if links or i % 2 else ["alice", "bob"]  # stubs scheme: half are shared bodies
        w.commit("s@isp.test", [Route("local", "alice@office.test", users)])
    fill = time.perf_counter() - t
    opened: list[str] = []
    real_open = builtins.open

    def spy(path, *a, **k):
        opened.append(str(path))
        return real_open(path, *a, **k)

    builtins.open = spy
    try:
        t = time.perf_counter()
        md = sp.maildrops.open("alice")
        msgs = md.messages()
        took = time.perf_counter() - t
        md.close()
    finally:
        builtins.open = real_open
    assert len(msgs) == n and all(size == len(body) for _, size in msgs)
    assert not [p for p in opened if "/mail/" in p or "/body/" in p], opened[:5]
    print(f"\n# list a {n:,}-message maildrop ({'hard links' if links else 'half .ref stubs'}): "
          f"{took * 1000:.0f} ms on CPython (spooling them took {fill:.1f} s); no body opened")
