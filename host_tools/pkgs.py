"""Install the Debian packages a test needs (swaks, fetchmail, postfix, ...).

    python3 -m host_tools.pkgs swaks fetchmail

Used by test fixtures: `ensure("swaks")` returns None when the program is
there (installing it with apt-get if it is missing and we are root), or a
reason string when it cannot be had. Under CI=true a missing package is an
error, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile

# package -> a program that proves it is installed
PROGRAMS = {"swaks": "swaks", "fetchmail": "fetchmail", "postfix": "/usr/sbin/postfix", "ppp": "/usr/sbin/pppd",
            "openssl": "openssl", "systemd": "systemd-analyze", "logrotate": "/usr/sbin/logrotate",
            # swaks's STARTTLS needs Net::SSLeay; a Debian package's doc dir proves it is installed
            "libnet-ssleay-perl": "/usr/share/doc/libnet-ssleay-perl"}
_updated = False


def _have(pkg: str) -> bool:
    prog = PROGRAMS.get(pkg, pkg)
    return os.path.exists(prog) if prog.startswith("/") else shutil.which(prog) is not None


def ensure(*pkgs: str) -> str | None:
    """Install missing packages. Returns None on success, else why not.

    `make test` runs pytest in two worker processes: two fixtures asking at
    once take turns on a lock file (and apt waits for dpkg's own lock, which
    another apt on the machine may hold), the second seeing what the first
    installed."""
    missing = [p for p in pkgs if not _have(p)]
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"needs {' '.join(missing)} and we are not root to apt-get install it"
    with open(os.path.join(tempfile.gettempdir(), "dialgate-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install([p for p in missing if not _have(p)])  # (what the lock's last holder left)


def _install(missing: list[str]) -> str | None:
    global _updated
    if not missing:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    if not _updated:
        subprocess.run(["apt-get", *wait, "update", "-q"], env=env, capture_output=True, check=False, timeout=600)
        _updated = True
    r = subprocess.run(["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *missing], env=env,
                       capture_output=True, text=True, check=False, timeout=900)
    still = [p for p in missing if not _have(p)]
    if still:
        return f"apt-get install {' '.join(still)} failed: {r.stderr.strip()[-300:]}"
    return None


def require(*pkgs: str) -> None:
    """For pytest: install or skip with the reason (never skip when CI=true)."""
    why = ensure(*pkgs)
    if why is None:
        return
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test: {why}")
    pytest.skip(why)


if __name__ == "__main__":
    problem = ensure(*sys.argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
