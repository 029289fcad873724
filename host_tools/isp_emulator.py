"""The emulated ISP for `make run` and tests: a smarthost that holds the office's mail until ETRN.

    python3 -m host_tools.isp_emulator --listen 127.0.0.1:2600 --office-domain office.test \
        --office-smtp 127.0.0.1:2525 --dir run/isp --user office:secret

* Mail for the office domain (from "the Internet": anyone) is held in DIR/held/
  until the office asks for it with `ETRN office.test` (RFC 1985); then the ISP
  connects to the office gateway (`--office-smtp`, reachable only while the
  modem link is up) and delivers the held messages, removing each after 250.
* Mail for any other domain is relayed only for an authenticated client
  (AUTH PLAIN/LOGIN, RFC 4954) or one connecting from a `--relay-from` address
  (as ISPs relay for the address they gave a dial-up customer), and lands in
  DIR/internet/ ("the Internet").
* With `--odmr HOST:PORT` it is also an On-Demand Mail Relay provider (RFC
  2645): the office connects out, authenticates (AUTH CRAM-MD5, a `--user`),
  says `ATRN office.test`, and the held mail comes back over the same
  connection, the ISP now the SMTP client.
* With `--pop3 HOST:PORT` it also keeps the office's mailbox for POP3 multidrop
  collection (RFC 1939): DIR/mailbox/, one file per message and recipient, each
  with `X-Original-To:` and `Delivered-To:` on top (as a Postfix catch-all
  writes them); the file's name is its UIDL. With `--multidrop` the office's
  mail from SMTP goes there instead of being held for ETRN/ODMR. Login by APOP
  (the greeting has a timestamp) or USER/PASS, a `--user`; one session at a
  time (`-ERR [IN-USE]`, RFC 2449 §8); DELE takes effect only at QUIT (§6).
* Every accepted message is stored byte for byte as received (after dot
  un-stuffing) with its envelope in a `.env` JSON file beside it.
* `--reject ADDR` refuses that recipient at RCPT with 550 5.1.1 (so the gateway
  bounces it). `XFAULT NAME` (a test's hook, on any connection) arms one fault
  for the next time its moment comes; when it fires, DIR/fault.hit names it, so a
  test can drop the modem's carrier right then (tests/host/test_reliability_link.py):
  `stall-data` (stop answering a few lines into a message's DATA), `stall-dot`
  (store the message after its final dot, never answer), `close-dot` (store it,
  send half of the 250 and close), `stall-etrn` (never answer ETRN),
  `stall-inbound` (stop half-way through a held message's DATA to the office),
  `stall-pop3-retr` (stop half-way through the RETR of the POP3 mailbox's last
  message: those before it were fetched, and perhaps deleted, but no QUIT comes).
  `XODMR [reply=CODE] [stall=SECONDS] [drop_after=N] [noquit=1]` sets the ODMR
  service's knobs for the calls that follow (a bare `XODMR` clears them): answer
  ATRN with CODE, wait SECONDS before answering, cut the reversed session in
  the DATA of message N (0 = the first), or end it without QUIT. Each ATRN's
  argument is appended to DIR/atrn.seen.

A real Postfix plays this part in the end-to-end tests; this one needs no root.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import json
import os
import signal
import sys
import time
from pathlib import Path

MAX_LINE = 1000
FAULTS = ("stall-data", "stall-dot", "close-dot", "stall-etrn", "stall-inbound", "stall-pop3-retr")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("held", "internet", "mailbox", "tmp"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self._n = 0

    def put(self, box: str, sender: str, rcpts: list[str], body: bytes) -> Path:
        self._n += 1
        name = f"{time.time_ns()}.{os.getpid()}.{self._n}"
        tmp = self.root / "tmp" / name
        tmp.write_bytes(body)
        (self.root / box / (name + ".env")).write_text(json.dumps({"from": sender, "to": rcpts}))
        final = self.root / box / (name + ".eml")
        os.replace(tmp, final)
        return final

    def held(self) -> list[Path]:
        return sorted((self.root / "held").glob("*.eml"))

    def put_mailbox(self, rcpt: str, body: bytes, account: str = "office@isp.test") -> Path:
        """One copy in the POP3 multidrop mailbox for envelope recipient `rcpt`,
        its envelope on top as Postfix writes it (Delivered-To, X-Original-To)."""
        self._n += 1
        name = f"{time.time_ns()}.{os.getpid()}.{self._n}"
        tmp = self.root / "tmp" / name
        tmp.write_bytes(f"Delivered-To: {account}\r\nX-Original-To: {rcpt}\r\n".encode() + body)
        final = self.root / "mailbox" / (name + ".eml")
        os.replace(tmp, final)
        return final

    def mailbox(self) -> list[Path]:
        return sorted((self.root / "mailbox").glob("*.eml"))


def _addr(arg: str, keyword: str) -> str | None:
    """'FROM:<a@b> SIZE=1' -> 'a@b' (None if malformed)."""
    if not arg.upper().startswith(keyword + ":"):
        return None
    rest = arg[len(keyword) + 1:].strip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    return rest[1:rest.index(">")]


class IspSession:
    def __init__(self, isp: Isp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.isp, self.r, self.w = isp, reader, writer
        self.user: str | None = None
        self.peer = (writer.get_extra_info("peername") or ("?",))[0]
        self.reset()

    def reset(self) -> None:
        self.sender: str | None = None
        self.rcpts: list[str] = []

    async def reply(self, text: str) -> None:
        self.w.write(text.encode() + b"\r\n")
        await self.w.drain()

    async def stall(self) -> bool:
        """Never answer again: read (and drop) until the peer or the line goes away."""
        await _drain_until_eof(self.r)
        return False

    async def readline(self) -> bytes:
        line = await self.r.readuntil(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("line too long")
        return line

    async def run(self) -> None:
        # sendmail-style: the greeting carries the ISP's date, which a board without
        # a battery clock may take as the time (docs/sessions.md, "Clock")
        await self.reply(f"220 {self.isp.name} ESMTP emulated ISP; {email.utils.formatdate(usegmt=False)}")
        while True:
            try:
                raw = await self.readline()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
                return
            line = raw.decode("latin-1").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "do_" + verb, None)
            if handler is None:
                await self.reply("502 5.5.2 command not recognised")
                continue
            if await handler(arg.strip()) is False:
                return

    async def do_EHLO(self, arg: str) -> None:
        self.reset()
        await self.reply(f"250-{self.isp.name}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
                         "250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES")

    async def do_HELO(self, arg: str) -> None:
        self.reset()
        await self.reply(f"250 {self.isp.name}")

    async def do_AUTH(self, arg: str) -> None:
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        try:
            if mech == "PLAIN":
                if not initial:
                    await self.reply("334 ")
                    initial = (await self.readline()).decode().strip()
                _, user, pw = base64.b64decode(initial).decode().split("\0")
            elif mech == "LOGIN":
                await self.reply("334 VXNlcm5hbWU6")
                user = base64.b64decode((await self.readline()).strip()).decode()
                await self.reply("334 UGFzc3dvcmQ6")
                pw = base64.b64decode((await self.readline()).strip()).decode()
            else:
                await self.reply("504 5.5.4 mechanism not supported")
                return
        except (ValueError, UnicodeError):
            await self.reply("501 5.5.2 bad AUTH data")
            return
        if self.isp.users.get(user) == pw:
            self.user = user
            await self.reply("235 2.7.0 authenticated")
        else:
            await self.reply("535 5.7.8 authentication failed")

    async def do_MAIL(self, arg: str) -> None:
        a = _addr(arg, "FROM")
        if a is None:
            await self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
            return
        self.sender, self.rcpts = a, []
        await self.reply("250 2.1.0 ok")

    async def do_RCPT(self, arg: str) -> None:
        a = _addr(arg, "TO")
        if self.sender is None:
            await self.reply("503 5.5.1 MAIL first")
        elif a is None or "@" not in a:
            await self.reply("501 5.5.4 syntax: RCPT TO:<address>")
        elif not self.isp.is_office(a) and self.user is None and self.peer not in self.isp.relay_from:
            await self.reply("554 5.7.1 relaying denied")
        elif a.lower() in self.isp.reject:
            await self.reply(f"550 5.1.1 <{a}>: Recipient address rejected: User unknown")
        else:
            self.rcpts.append(a)
            await self.reply("250 2.1.5 ok")

    async def do_DATA(self, arg: str) -> bool | None:
        if not self.rcpts:
            await self.reply("503 5.5.1 RCPT first")
            return None
        await self.reply("354 end with <CRLF>.<CRLF>")
        parts = []
        while True:
            line = await self.r.readuntil(b"\r\n")
            if line == b".\r\n":
                break
            parts.append(line[1:] if line.startswith(b".") else line)
            if len(parts) == 3 and self.isp.fire("stall-data"):
                return await self.stall()
        body = b"".join(parts)
        office = [r for r in self.rcpts if self.isp.is_office(r)]
        other = [r for r in self.rcpts if not self.isp.is_office(r)]
        if office and self.isp.multidrop:
            for r in office:
                self.isp.store.put_mailbox(r, body)
        elif office:
            self.isp.store.put("held", self.sender or "", office, body)
        if other:
            self.isp.store.put("internet", self.sender or "", other, body)
        self.reset()
        if self.isp.fire("stall-dot"):
            return await self.stall()  # committed: the 250 never comes
        if self.isp.fire("close-dot"):
            self.w.write(b"250 2.0")  # committed: half the reply, then the connection goes
            await self.w.drain()
            return False
        await self.reply("250 2.0.0 queued")
        return None

    async def do_ETRN(self, arg: str) -> bool | None:
        # RFC 1985 §5: 250 queuing started / 251 no messages / 458 unable / 459 not allowed for that node.
        node = arg.lstrip("@#").lower()
        if self.isp.fire("stall-etrn"):
            return await self.stall()
        if node != self.isp.office_domain:
            await self.reply(f"459 4.7.1 {arg}: not a domain held here")
            return None
        if not self.isp.store.held():
            await self.reply("251 2.0.0 no messages waiting")
            return None
        self.isp.kick()
        await self.reply(f"250 2.0.0 queuing for node {node} started")
        return None

    async def do_RSET(self, arg: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 ok")

    async def do_NOOP(self, arg: str) -> None:
        await self.reply("250 2.0.0 ok")

    async def do_XFAULT(self, arg: str) -> None:
        name = arg.strip().lower()
        if name not in FAULTS:
            await self.reply("501 5.5.4 faults: " + " ".join(FAULTS))
            return
        self.isp.faults.add(name)
        self.isp.hit_path.unlink(missing_ok=True)
        await self.reply(f"250 2.0.0 armed {name}")

    async def do_XODMR(self, arg: str) -> None:
        isp = self.isp
        knobs = {"reply": 0, "stall": 0.0, "drop_after": -1, "noquit": 0}
        try:
            for word in arg.split():
                k, _, v = word.partition("=")
                if k not in knobs:
                    raise ValueError(k)
                knobs[k] = type(knobs[k])(v)
        except ValueError:
            await self.reply("501 5.5.4 XODMR [reply=CODE] [stall=SECONDS] [drop_after=N] [noquit=1]")
            return
        isp.odmr_reply, isp.odmr_stall = int(knobs["reply"]), float(knobs["stall"])
        isp.odmr_drop_after, isp.odmr_noquit = int(knobs["drop_after"]), bool(knobs["noquit"])
        await self.reply(f"250 2.0.0 ODMR knobs {' '.join(f'{k}={v}' for k, v in knobs.items())}")

    async def do_QUIT(self, arg: str) -> bool:
        await self.reply("221 2.0.0 bye")
        return False


async def _drain_until_eof(r: asyncio.StreamReader, seconds: float = 120) -> None:
    try:
        async with asyncio.timeout(seconds):
            while await r.read(4096):
                pass
    except (TimeoutError, OSError):
        pass


class OdmrSession(IspSession):
    """The ISP's On-Demand Mail Relay service (RFC 2645, port 366): EHLO offers
    AUTH CRAM-MD5 and ATRN (and STARTTLS with --odmr-cert); after AUTH, `ATRN
    [d1,d2]` reverses the connection and the ISP delivers the held mail over it.

    Test knobs on the Isp: `odmr_reply` (answer ATRN with this code instead),
    `odmr_stall` (seconds before answering ATRN), `odmr_drop_after` (cut the
    reversed session in the DATA of that message), `odmr_noquit` (end the
    reversed session without QUIT); set over SMTP with `XODMR`."""

    async def run(self) -> None:
        self.challenge = ""
        await self.reply(f"220 {self.isp.name} ODMR service ready")
        while True:
            try:
                raw = await self.readline()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
                return
            line = raw.decode("latin-1").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                tls = "250-STARTTLS\r\n" if self.isp.odmr_tls is not None and not self.tls else ""
                await self.reply(f"250-{self.isp.name}\r\n{tls}250-AUTH CRAM-MD5\r\n250 ATRN")
            elif verb == "STARTTLS" and self.isp.odmr_tls is not None and not self.tls:
                await self.reply("220 2.0.0 ready to start TLS")
                await self.w.start_tls(self.isp.odmr_tls)
                self.tls, self.user = True, None
            elif verb == "AUTH" and arg.upper() == "CRAM-MD5":
                await self.do_cram()
            elif verb == "ATRN":
                if await self.do_atrn(arg.strip()):
                    return
            elif verb == "QUIT":
                await self.reply("221 2.0.0 bye")
                return
            elif verb in ("NOOP", "RSET"):
                await self.reply("250 2.0.0 ok")
            else:
                await self.reply("502 5.5.2 command not recognised")

    tls = False

    async def do_cram(self) -> None:
        import hmac

        ch = f"<{os.getpid()}.{time.time_ns()}@{self.isp.name}>".encode()
        await self.reply("334 " + base64.b64encode(ch).decode())
        try:
            user, _, digest = base64.b64decode((await self.readline()).strip()).decode().rpartition(" ")
        except (ValueError, UnicodeError):
            await self.reply("501 5.5.2 bad AUTH data")
            return
        pw = self.isp.users.get(user)
        if pw is not None and hmac.compare_digest(hmac.new(pw.encode(), ch, "md5").hexdigest(), digest):
            self.user = user
            await self.reply("235 2.7.0 authenticated")
        else:
            await self.reply("535 5.7.8 authentication failed")

    async def do_atrn(self, arg: str) -> bool:
        """RFC 2645 §5.2.1 replies. Returns True once the connection was reversed."""
        isp = self.isp
        self.isp.atrn_seen.append(arg)
        with open(isp.store.root / "atrn.seen", "a") as f:
            f.write(arg + "\n")
        if isp.odmr_stall:
            await asyncio.sleep(isp.odmr_stall)
        forced = isp.odmr_reply
        domains = [d.strip().lower() for d in arg.split(",") if d.strip()] or [isp.office_domain]
        if forced:
            await self.reply(f"{forced} {'forced reply (test knob)'}")
            return False
        if self.user is None:
            await self.reply("530 5.7.0 authentication required")
            return False
        if any(d not in isp.odmr_domains and d != isp.office_domain for d in domains):
            await self.reply("450 4.7.1 access denied to that domain")
            return False
        if not isp.store.held():
            await self.reply("453 You have no mail")
            return False
        await self.reply("250 OK now reversing the connection")
        await isp.deliver_over(self.r, self.w, domains, isp.odmr_drop_after, not isp.odmr_noquit)
        return True


class Pop3Session:
    """The ISP's POP3 server for the office's multidrop mailbox (RFC 1939):
    AUTHORIZATION (APOP, USER/PASS), TRANSACTION (STAT, LIST, UIDL, RETR, DELE,
    RSET, NOOP), UPDATE at QUIT: only then are the deleted messages removed (§6).
    A connection that ends any other way deletes nothing. One session holds the
    mailbox at a time; another gets `-ERR [IN-USE]` (RFC 2449 §8)."""

    def __init__(self, isp: Isp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.isp, self.r, self.w = isp, reader, writer
        self.user: str | None = None
        self.msgs: list[Path] = []  # the mailbox as it was at login (numbers are stable, §5)
        self.deleted: set[int] = set()
        self.locked = False
        self.quit = False

    async def reply(self, text: str) -> None:
        self.w.write(text.encode() + b"\r\n")
        await self.w.drain()

    async def run(self) -> None:
        self.stamp = f"<{os.getpid()}.{time.time_ns()}@{self.isp.name}>"  # APOP's timestamp (§7)
        await self.reply(f"+OK {self.isp.name} POP3 emulated ISP mailbox ready {self.stamp}")
        try:
            while True:
                try:
                    line = await self.r.readuntil(b"\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                verb, _, arg = line.decode("latin-1").strip().partition(" ")
                verb = verb.upper()
                handler = getattr(self, "do_" + verb, None)
                login = verb in ("USER", "PASS", "APOP")
                if handler is None or (self.user is None and not login and verb not in ("CAPA", "QUIT")) \
                        or (self.user is not None and login):
                    await self.reply("-ERR command not valid in this state")
                    continue
                if await handler(arg.strip()) is False:
                    return
        finally:
            if self.locked:
                self.isp.pop3_busy = False
                if self.deleted or not self.quit:
                    self.isp.log(f"isp: POP3 session cut without QUIT, {len(self.deleted)} DELE(s) undone")

    async def do_CAPA(self, arg: str) -> None:
        await self.reply("+OK capabilities\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\n"
                         "IMPLEMENTATION dialgate-isp-emulator\r\n.")

    async def do_USER(self, arg: str) -> None:
        self.name = arg
        await self.reply("+OK send PASS")

    async def do_PASS(self, arg: str) -> None:
        await self.login(getattr(self, "name", None), self.isp.users.get(getattr(self, "name", "")) == arg)

    async def do_APOP(self, arg: str) -> None:
        import hashlib
        import hmac

        name, _, digest = arg.rpartition(" ")
        pw = self.isp.users.get(name)
        want = hashlib.md5((self.stamp + (pw or "")).encode()).hexdigest()
        await self.login(name, pw is not None and hmac.compare_digest(want, digest.lower()))

    async def login(self, name: str | None, ok: bool) -> None:
        if not ok or name is None:
            await self.reply("-ERR [AUTH] invalid user name or password")
            return
        if self.isp.pop3_busy:
            await self.reply("-ERR [IN-USE] the mailbox is in use by another session")
            return
        self.isp.pop3_busy = self.locked = True
        self.user = name
        self.msgs = self.isp.store.mailbox()
        self.isp.log(f"isp: POP3 login {name}, {len(self.msgs)} message(s) in the mailbox")
        await self.reply(f"+OK {len(self.msgs)} message(s)")

    def _live(self) -> list[tuple[int, Path]]:
        return [(k + 1, p) for k, p in enumerate(self.msgs) if k + 1 not in self.deleted]

    def _msg(self, arg: str) -> Path | None:
        try:
            k = int(arg)
        except ValueError:
            return None
        return self.msgs[k - 1] if 1 <= k <= len(self.msgs) and k not in self.deleted else None

    @staticmethod
    def _size(p: Path) -> int:
        try:
            return p.stat().st_size
        except OSError:
            return 0

    async def do_STAT(self, arg: str) -> None:
        live = self._live()
        await self.reply(f"+OK {len(live)} {sum(self._size(p) for _, p in live)}")

    async def _listing(self, arg: str, value) -> None:
        if arg:
            p = self._msg(arg)
            await self.reply(f"+OK {arg} {value(p)}" if p is not None else "-ERR no such message")
            return
        lines = "".join(f"{k} {value(p)}\r\n" for k, p in self._live())
        await self.reply(f"+OK\r\n{lines}.")

    async def do_LIST(self, arg: str) -> None:
        await self._listing(arg, self._size)

    async def do_UIDL(self, arg: str) -> None:
        await self._listing(arg, lambda p: p.stem)

    async def _send(self, p: Path, lines_max: int = -1, last: bool = False) -> bool:
        try:
            data = p.read_bytes()
        except OSError:
            await self.reply("-ERR [SYS/TEMP] message cannot be read")
            return True
        await self.reply(f"+OK {len(data)} octets")
        if lines_max >= 0:
            head, sep, body = data.partition(b"\r\n\r\n")
            data = head + sep + b"".join(body.splitlines(keepends=True)[:lines_max])
        lines = data.splitlines(keepends=True)
        for k, line in enumerate(lines):
            self.w.write(b"." + line if line.startswith(b".") else line)
            if last and k == len(lines) // 2 and self.isp.fire("stall-pop3-retr"):
                await self.w.drain()
                await _drain_until_eof(self.r)  # half a message sent; wait for the line to go
                return False
        if data and not data.endswith(b"\r\n"):
            self.w.write(b"\r\n")
        await self.reply(".")
        return True

    async def do_RETR(self, arg: str) -> bool | None:
        p = self._msg(arg)
        if p is None:
            await self.reply("-ERR no such message")
            return None
        return None if await self._send(p, last=int(arg) == len(self.msgs)) else False

    async def do_TOP(self, arg: str) -> bool | None:
        k, _, n = arg.partition(" ")
        p = self._msg(k)
        if p is None or not n.isdigit():
            await self.reply("-ERR no such message")
            return None
        return None if await self._send(p, int(n)) else False

    async def do_DELE(self, arg: str) -> None:
        p = self._msg(arg)
        if p is None:
            await self.reply("-ERR no such message")
            return
        self.deleted.add(int(arg))
        await self.reply(f"+OK message {arg} deleted")

    async def do_RSET(self, arg: str) -> None:
        self.deleted.clear()
        await self.reply("+OK")

    async def do_NOOP(self, arg: str) -> None:
        await self.reply("+OK")

    async def do_QUIT(self, arg: str) -> bool:
        for k in sorted(self.deleted):  # UPDATE state (§6): only now
            self.msgs[k - 1].unlink(missing_ok=True)
        if self.deleted:
            self.isp.log(f"isp: POP3 QUIT removed {len(self.deleted)} message(s) from the mailbox")
        self.deleted.clear()
        self.quit = True
        await self.reply(f"+OK {self.isp.name} POP3 bye")
        return False


class Isp:
    def __init__(self, name: str, office_domain: str, office_smtp: tuple[str, int], root: Path,
                 users: dict[str, str], relay_from: tuple[str, ...] = (), reject: tuple[str, ...] = ()) -> None:
        self.name = name
        self.office_domain = office_domain.lower()
        self.office_smtp = office_smtp
        self.store = Store(root)
        self.users = users
        self.relay_from = relay_from
        self.reject = {a.lower() for a in reject}
        self.faults: set[str] = set()  # armed by XFAULT, each fires once
        self.hit_path = root / "fault.hit"
        self._flush: asyncio.Task | None = None
        self.log = lambda m: print(m, flush=True)
        self.odmr_tls = None  # ssl.SSLContext: STARTTLS on the ODMR service
        self.odmr_reply = 0
        self.odmr_stall = 0.0
        self.odmr_drop_after = -1
        self.odmr_noquit = False
        self.odmr_domains: set[str] = set()  # more domains the ODMR account may ask for (none held)
        self.atrn_seen: list[str] = []
        self.multidrop = False  # office mail from SMTP goes into the POP3 mailbox (--multidrop)
        self.pop3_busy = False  # a POP3 session holds the mailbox

    def fire(self, name: str) -> bool:
        """True (once) if fault `name` is armed: DIR/fault.hit then names it."""
        if name not in self.faults:
            return False
        self.faults.discard(name)
        self.hit_path.write_text(name + "\n")
        self.log(f"isp: fault {name} fired")
        return True

    def is_office(self, addr: str) -> bool:
        return addr.rpartition("@")[2].lower().rstrip(".") == self.office_domain

    def kick(self) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self.deliver_held())

    async def deliver_held(self) -> int:
        """Deliver held mail to the office gateway over SMTP (after ETRN); returns how many went."""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(*self.office_smtp), 30)
        except (TimeoutError, OSError) as e:
            self.log(f"isp: cannot reach the office at {self.office_smtp}: {e}")
            return 0
        try:
            return await self.deliver_over(r, w)
        finally:
            w.close()

    async def deliver_over(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, domains: list[str] | None = None,
                           drop_after: int = -1, quit: bool = True) -> int:
        """Be the SMTP client on an open connection whose far end is the office's SMTP
        server (a new connection after ETRN, or the reversed one after ATRN): greet,
        deliver the held messages, removing each after its 250, QUIT. `drop_after`:
        cut the connection in the middle of that message's DATA (tests); `quit`
        False: close after the last message without QUIT (tests)."""
        sent = 0

        async def expect(code: str) -> str:
            while True:
                line = (await asyncio.wait_for(r.readline(), 120)).decode("latin-1")
                if not line:
                    raise ConnectionError("office closed the connection")
                if line[3:4] != "-":
                    if not line.startswith(code):
                        raise ConnectionError(f"office said {line.strip()!r}")
                    return line

        try:
            await expect("220")
            w.write(f"EHLO {self.name}\r\n".encode())
            await expect("250")
            for eml in self.store.held():
                env = json.loads(eml.with_suffix(".env").read_text())
                w.write(f"MAIL FROM:<{env['from']}>\r\n".encode())
                await expect("250")
                for rc in env["to"]:
                    w.write(f"RCPT TO:<{rc}>\r\n".encode())
                    await expect("250")
                w.write(b"DATA\r\n")
                await expect("354")
                data = eml.read_bytes()
                if sent == drop_after:
                    w.write(data[: len(data) // 2])
                    await w.drain()
                    w.transport.abort()
                    raise ConnectionError(f"dropped in the DATA of message {sent + 1} (as asked)")
                lines = data.splitlines(keepends=True)
                for k, line in enumerate(lines):
                    w.write(b"." + line if line.startswith(b".") else line)
                    if k == len(lines) // 2 and self.fire("stall-inbound"):
                        await w.drain()
                        await _drain_until_eof(r)  # half a message sent; wait for the line to go
                        raise ConnectionError("stalled mid-DATA (fault stall-inbound)")
                if data and not data.endswith(b"\r\n"):
                    w.write(b"\r\n")
                w.write(b".\r\n")
                await expect("250")
                eml.unlink()
                eml.with_suffix(".env").unlink()
                sent += 1
            if not quit:
                w.transport.abort()
                raise ConnectionError("closed without QUIT (as asked)")
            w.write(b"QUIT\r\n")
            await w.drain()
            await expect("221")
        except (TimeoutError, OSError, ConnectionError) as e:
            self.log(f"isp: delivery to the office stopped after {sent}: {e}")
        self.log(f"isp: delivered {sent} held message(s) to {self.office_domain}")
        return sent

    async def serve(self, host: str, port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await IspSession(self, reader, writer).run()
            finally:
                writer.close()

        return await asyncio.start_server(handle, host, port, limit=MAX_LINE * 2)

    async def serve_pop3(self, host: str, port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await Pop3Session(self, reader, writer).run()
            except (OSError, ConnectionError) as e:
                self.log(f"isp: POP3 session ended: {e}")
            finally:
                writer.close()

        return await asyncio.start_server(handle, host, port, limit=MAX_LINE * 2)

    async def serve_odmr(self, host: str, port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await OdmrSession(self, reader, writer).run()
            except (OSError, ConnectionError) as e:
                self.log(f"isp: ODMR session ended: {e}")
            finally:
                writer.close()

        return await asyncio.start_server(handle, host, port, limit=MAX_LINE * 2)


def hold_demo(isp: Isp, n: int) -> None:
    """Held mail for a newcomer to watch arrive: to postmaster (always a maildrop)."""
    for i in range(1, n + 1):
        body = (f"From: Demo Sender <demo{i}@example.net>\r\nTo: postmaster@{isp.office_domain}\r\n"
                f"Subject: held at the ISP until your gateway called ({i} of {n})\r\n"
                f"Date: {email.utils.formatdate()}\r\nMessage-ID: <demo{i}.{time.time_ns()}@example.net>\r\n\r\n"
                f"This message waited at {isp.name} until the office's gateway dialled in and asked for it.\r\n")
        if isp.multidrop:
            isp.store.put_mailbox(f"postmaster@{isp.office_domain}", body.encode())
        else:
            isp.store.put("held", f"demo{i}@example.net", [f"postmaster@{isp.office_domain}"], body.encode())
    isp.log(f"isp: holding {n} demo message(s) for {isp.office_domain}")


def _hostport(s: str) -> tuple[str, int]:
    h, _, p = s.rpartition(":")
    return h, int(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:2600", type=_hostport)
    ap.add_argument("--name", default="smtp.isp.test")
    ap.add_argument("--office-domain", default="office.test")
    ap.add_argument("--office-smtp", default="127.0.0.1:2525", type=_hostport)
    ap.add_argument("--dir", default="run/isp", type=Path)
    ap.add_argument("--user", action="append", default=[], help="NAME:PASSWORD for AUTH (repeatable)")
    ap.add_argument("--relay-from", action="append", default=[], help="client address allowed to relay without AUTH")
    ap.add_argument("--odmr", type=_hostport, metavar="HOST:PORT",
                    help="also serve On-Demand Mail Relay (RFC 2645: AUTH CRAM-MD5, ATRN) here")
    ap.add_argument("--odmr-domain", action="append", default=[], metavar="DOMAIN",
                    help="another domain the ODMR account may name in ATRN (repeatable; nothing is held for it)")
    ap.add_argument("--odmr-cert", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS on the ODMR service")
    ap.add_argument("--pop3", type=_hostport, metavar="HOST:PORT",
                    help="also serve the office's POP3 multidrop mailbox (DIR/mailbox/) here")
    ap.add_argument("--multidrop", action="store_true",
                    help="office mail from SMTP goes into the POP3 mailbox (one copy per recipient, X-Original-To) "
                         "instead of being held for ETRN/ODMR")
    ap.add_argument("--reject", action="append", default=[], metavar="ADDR",
                    help="refuse this recipient at RCPT with 550 5.1.1 (repeatable)")
    ap.add_argument("--demo", type=int, default=0, metavar="N",
                    help="start with N demo messages held for postmaster@ and the office's users (if none are held)")
    a = ap.parse_args(argv)
    users = dict(u.split(":", 1) for u in a.user) or {"office": "office-secret"}
    isp = Isp(a.name, a.office_domain, a.office_smtp, a.dir, users, tuple(a.relay_from), tuple(a.reject))
    if a.multidrop and not a.pop3:
        ap.error("--multidrop needs --pop3")
    isp.multidrop = a.multidrop
    if a.demo and not isp.store.held() and not isp.store.mailbox():
        hold_demo(isp, a.demo)

    isp.odmr_domains = {d.lower() for d in a.odmr_domain}
    if a.odmr_cert:
        import ssl

        isp.odmr_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        isp.odmr_tls.load_cert_chain(*a.odmr_cert)

    async def run() -> None:
        srv = await isp.serve(*a.listen)
        print(f"emulated ISP {a.name}: SMTP {a.listen[0]}:{a.listen[1]}, holds mail for {a.office_domain} "
              f"until ETRN, delivers it to {a.office_smtp[0]}:{a.office_smtp[1]}", flush=True)
        if a.odmr:
            await isp.serve_odmr(*a.odmr)
            print(f"emulated ISP {a.name}: ODMR {a.odmr[0]}:{a.odmr[1]} (AUTH CRAM-MD5, ATRN {a.office_domain})",
                  flush=True)
        if a.pop3:
            await isp.serve_pop3(*a.pop3)
            print(f"emulated ISP {a.name}: POP3 {a.pop3[0]}:{a.pop3[1]} (the office's multidrop mailbox"
                  + (", where its mail goes" if a.multidrop else "") + ")", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with srv:
            await stop.wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
