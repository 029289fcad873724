"""dialgatectl: the operator's command for a dialgate gateway's console.

    dialgatectl                                   # interactive: history, tab completion (127.0.0.1:2323)
    dialgatectl --host 127.0.0.1:2323 status      # one command; exit 0 OK, 1 ERR, 2 no console
    dialgatectl --port /dev/ttyUSB0 queue list    # a board's serial console (pyserial)
    dialgatectl --json stats                      # status, stats, stats calls, stats csv, queue list/show as JSON
    dialgatectl report --out report.png           # the cost log as a picture (and report.csv)
    dialgatectl hash-password                     # a console.password hash for a config file

The password of a console that asks for one (console.password) comes from
--password-file, $DIALGATE_PASSWORD, or the terminal. docs/console.md has it all.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import getpass
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

from host_tools import console_json
from host_tools.console_client import ConsoleClient, ConsoleError
from host_tools.console_complete import Completer, parse_help

HISTORY = Path("~/.dialgatectl_history")
NO_CONSOLE = 2  # exit status: cannot connect, no answer, login refused


class LoginRefused(ConsoleError):
    pass


def connect(a: argparse.Namespace) -> ConsoleClient:
    if a.port:
        return ConsoleClient(serial_port=a.port, baud=a.baud, timeout=a.timeout)
    host, port = host_port(a.host, a.tcp_port)
    return ConsoleClient(host, port, timeout=a.timeout)


def host_port(text: str, default_port: int) -> tuple[str, int]:
    """--host HOST[:PORT] -> (host, port): a name, an IPv4 address, an IPv6
    address in brackets with or without a port ("[::1]:2323", "[fe80::1]") or bare
    without one ("::1"), as console.listen writes them (RFC 3986 §3.2.2)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad --host {text!r}: expected [IPV6]:PORT")
        port = rest[1:] or str(default_port)
    elif t.count(":") > 1:  # a bare IPv6 address: no port
        host, port = t, str(default_port)
    else:
        host, _, port = t.partition(":")
        port = port or str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in --host {text!r} (expected 1-65535)")
    return host or "127.0.0.1", int(port)


def password(a: argparse.Namespace, ask: bool) -> str | None:
    if a.password_file:
        return Path(a.password_file).read_text().strip()
    if os.environ.get("DIALGATE_PASSWORD"):
        return os.environ["DIALGATE_PASSWORD"]
    if ask and sys.stdin.isatty():
        return getpass.getpass("console password: ")
    return None


def login(c: ConsoleClient, a: argparse.Namespace, ask: bool) -> None:
    pw = password(a, ask)
    if pw is None:
        raise LoginRefused("the console asks for a password (--password-file, $DIALGATE_PASSWORD)")
    ok, last = c.login(pw)
    if not ok:
        raise LoginRefused(f"login refused: {last}")


def run(c: ConsoleClient, a: argparse.Namespace, line: str, ask: bool = False) -> tuple[bool, list[str], str]:
    """One command, logging in first when the console asks (a UART says so only now)."""
    if c.login_required:
        login(c, a, ask)
    ok, lines, last = c.command(line)
    if last.startswith("ERR login first"):
        login(c, a, ask)
        ok, lines, last = c.command(line)
    return ok, lines, last


def one_shot(c: ConsoleClient, a: argparse.Namespace, words: list[str]) -> int:
    line = " ".join(words)
    ok, lines, last = run(c, a, line)
    if ok and a.json:
        if words[:2] == ["stats", "calls"]:  # the text has free-form fields: the CSV has them all
            n = len([x for x in lines if x.startswith("#")])
            ok, csv_lines, last = run(c, a, "stats csv")
            value = {"calls": console_json.calls_csv(csv_lines)[-n:] if n else []}
        else:
            value = console_json.as_json(line, lines)
        print(json.dumps(value, indent=1))
    elif ok:
        for x in lines:
            print(x)
    else:
        for x in lines:
            print(x)
        print(last, file=sys.stderr)
    return 0 if ok else 1


# ---- interactive ------------------------------------------------------------


class LiveSource:
    """What a placeholder names, asked of the gateway at the first Tab after each command."""

    def __init__(self, c: ConsoleClient) -> None:
        self.c = c
        self.cache: dict[str, list[str]] = {}

    def __call__(self, kind: str) -> list[str]:
        if kind not in self.cache:
            cmd = {"ID": "queue list", "NAME": "user list", "ADDRESS": "alias list"}[kind]
            try:
                ok, lines, _ = self.c.command(cmd)
            except ConsoleError:
                ok, lines = False, []
            self.cache[kind] = [x.split()[0] for x in lines if x and not x.startswith("(")
                                and (kind != "ID" or " pending, " in x)] if ok else []
        return self.cache[kind]


def interactive(c: ConsoleClient, a: argparse.Namespace) -> int:
    try:
        import readline
    except ImportError:  # no GNU readline (e.g. Windows): plain input()
        readline = None
    prompt = "dialgate> "
    if c.greeting and c.greeting[0].startswith("dialgate console on "):
        prompt = c.greeting[0][len("dialgate console on "):].split(",")[0] + "> "
    for x in c.greeting:
        print(x)
    if c.login_required:
        login(c, a, ask=True)
        print("logged in")
    source = LiveSource(c)
    if readline is not None:
        ok, lines, _ = run(c, a, "help", ask=True)
        completer = Completer(parse_help(lines) if ok else {}, source)

        def complete(text: str, state: int) -> str | None:
            line = readline.get_line_buffer()[: readline.get_endidx()]
            found = completer.candidates(line)
            return found[state] + " " if state < len(found) else None

        readline.set_completer_delims(" ")
        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")
        hist = HISTORY.expanduser()
        try:
            readline.read_history_file(hist)
        except OSError:
            pass
        readline.set_history_length(1000)
    status = 0
    try:
        while True:
            try:
                line = input(prompt)
            except KeyboardInterrupt:
                print()
                continue
            except EOFError:
                print()
                line = "quit"
            if not line.strip():
                continue
            ok, lines, last = run(c, a, line, ask=True)
            source.cache.clear()  # ids and names may have changed
            for x in lines:
                print(x)
            print(last)
            status = 0 if ok else 1
            if line.strip() in ("quit", "exit"):
                break
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY.expanduser())
            except OSError:
                pass
    return status


# ---- host-side commands -------------------------------------------------------


def hash_password(pw: str, iterations: int) -> str:
    """The firmware's format (dialgate.users.hash_password): pbkdf2-sha256$ITER$SALT$HASH, base64."""
    salt = secrets.token_bytes(16)
    dk = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, iterations, 32)
    return f"pbkdf2-sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def cmd_hash_password(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="dialgatectl hash-password",
                                 description="Print a console.password hash for a config file.")
    ap.add_argument("--iterations", type=int, default=10000,
                    help="PBKDF2 iterations: the profile's users.iterations (pico_w, esp32: 2000; rpi: 100000)")
    ap.add_argument("--stdin", action="store_true", help="read the password from standard input")
    a = ap.parse_args(argv)
    if a.stdin:
        pw = sys.stdin.readline().strip()
    else:
        pw = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != pw:
            print("the two differ", file=sys.stderr)
            return 1
    if not 0 < len(pw) <= 128 or any(not 0x21 <= ord(ch) <= 0x7E for ch in pw):
        print("a password is 1-128 printable characters, no spaces", file=sys.stderr)
        return 1
    print(hash_password(pw, a.iterations))
    return 0


def cmd_report(c: ConsoleClient, a: argparse.Namespace, argv: list[str]) -> int:
    from host_tools import cost_report

    ap = argparse.ArgumentParser(prog="dialgatectl report", description=cost_report.__doc__)
    ap.add_argument("--out", type=Path, default=Path("dialgate-report.png"), help="the picture (PNG)")
    ap.add_argument("--csv", type=Path, help="the figures per day (default: beside --out, .csv)")
    ap.add_argument("--days", type=int, default=14, help="days up to today (0: every day logged)")
    r = ap.parse_args(argv)

    def value(key: str) -> str:
        ok, lines, last = run(c, a, f"config get {key}")
        if not ok:
            raise ConsoleError(last)
        return json.loads(lines[0].split(" = ", 1)[1])

    ok, lines, last = run(c, a, "stats csv")
    if not ok:
        print(last, file=sys.stderr)
        return 1
    calls = console_json.calls_csv(lines)
    _ok, qlines, _ = run(c, a, "queue list")
    queued = console_json.queue_list(qlines)["count"]
    offset = int(value("schedule.utc_offset"))
    today = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=offset)).date()
    rep = cost_report.build(calls, r.days, today, value("hostname"), queued, int(value("schedule.daily_minutes")))
    csv_path = r.csv or r.out.with_suffix(".csv")
    cost_report.draw(rep, r.out)
    cost_report.write_csv(rep, csv_path)
    print(f"{r.out}: {len(rep.days)} day(s), {sum(d.calls for d in rep.days)} call(s); figures in {csv_path}")
    return 0


# ---- entry ------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="dialgatectl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1:2323", help="console over TCP, HOST[:PORT] (default 127.0.0.1:2323)")
    ap.add_argument("--tcp-port", type=int, default=2323, help=argparse.SUPPRESS)  # console_client's old option
    ap.add_argument("--port", help="a board's serial console: /dev/ttyACM0, /dev/ttyUSB0, or a pyserial URL")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)")
    ap.add_argument("--password-file", help="file holding the console password")
    ap.add_argument("--json", action="store_true", help="print the reply as JSON")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="a console command (see `help`), or: report, hash-password")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    words = a.command
    if words[:1] == ["hash-password"]:
        return cmd_hash_password(words[1:])
    try:
        c = connect(a)
    except ValueError as e:  # a --host that is no HOST[:PORT]
        print(f"dialgatectl: {e}", file=sys.stderr)
        return NO_CONSOLE
    except OSError as e:
        print(f"dialgatectl: cannot reach the console: {e}", file=sys.stderr)
        return NO_CONSOLE
    try:
        if words[:1] == ["report"]:
            return cmd_report(c, a, words[1:])
        if words:
            return one_shot(c, a, words)
        return interactive(c, a)
    except OSError as e:  # ConsoleError, LoginRefused, a serial port gone
        print(f"dialgatectl: {e}", file=sys.stderr)
        return NO_CONSOLE
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
