"""POP3 multidrop: what the collector does with the ISP mailbox's messages
(docs/inbound.md). `Collection` is the pop3_client's box: it matches the
listing against the UIDL journal, chooses what to fetch and delete, streams
each message into a spool writer while `HeaderScan` reads its envelope
header, sorts it to the office's maildrops (the gateway's Router), commits it
and journals its UIDL before the client may say DELE. Synchronous, bounded
RAM; the transport and the dialogue are the client's.
"""

from array import array

from . import compat, limits, log
from .compat import const
from .delivery import Route
from .header_scan import HeaderScan
from .pop3_client import DELE, RETR
from .pop3_journal import COLLECTED, PENDING, TOO_LARGE, valid_uid
from .smtp_data import rfc5322_date

# per-message flags
_KNOWN = const(1)  # journaled as collected: the office has it
_NOTICED = const(2)  # journaled as too large: the postmaster was told
_AGED = const(4)  # leave_on_server: collected more than keep_days ago, to be deleted
_DONE = const(8)  # handled in this call


class Collection:
    """One call's collection from the ISP mailbox `where` ("user@host:port"):
    the pop3_client's box (its interface is in pop3_client's docstring).

    `host`: the ISP's POP3 server's name (our Received line). `journal`:
    pop3_journal.UidlJournal. Counts when done: `collected`, `dels`
    (deleted at the ISP), `known` (the office had them already), `too_large`, `failed`,
    `left()`; `stop`: why it stopped early ("" if it did not)."""

    def __init__(self, cfg, spool, router, journal, where, host=""):
        self.cfg = cfg
        self.host = host or where
        self.spool = spool
        self.router = router
        self.journal = journal
        self.where = where
        self.max_size = cfg["isp.pop3.max_size"]
        self.leave = cfg["isp.pop3.leave_on_server"]
        self.keep_s = cfg["isp.pop3.keep_days"] * 86400
        env = cfg["isp.pop3.envelope"]
        self.env_name = env
        self.scan = HeaderScan(None if env == "none" else env.lower().encode(), cfg["isp.pop3.guess"],
                               cfg.is_local_domain)
        self.total = 0  # messages at the ISP (STAT)
        self.n = 0  # listed here (at most limits.POP3_LISTED)
        self.skipped = 0  # listed with a UIDL we cannot journal
        self.uids = bytearray(b"\n")  # "\nUID1\nUID2\n...": find() is the lookup
        self.offs = array("L")
        self.nums = array("L")
        self.sizes = array("L")
        self.flags = bytearray()
        self.cursor = 0  # LIST lines come in UIDL order
        self.dq = []  # indexes to DELE
        self.pos = 0
        self.writer = None
        self.err = None
        self.committing = None  # (index, routes, how) of the commit retrieved() started
        self.collected = 0
        self.dels = 0
        self.known = 0
        self.too_large = 0
        self.failed = 0
        self.quit_ok = False
        self.stop = ""

    # ---- the listing ------------------------------------------------------------

    def begin_listing(self, count):
        self.total = count

    def listed(self, n, uid):
        if self.n >= limits.POP3_LISTED:
            return
        if not valid_uid(uid):
            self.skipped += 1
            log.warn("multidrop %s: message %d has a UIDL that cannot be journaled, left at the ISP", self.where, n)
            return
        self.offs.append(len(self.uids))
        self.uids += uid
        self.uids += b"\n"
        self.nums.append(n)
        self.sizes.append(0)
        self.flags.append(0)
        self.n += 1

    def _index(self, n):
        nums = self.nums
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if nums[mid] < n:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self.n and nums[lo] == n else -1

    def sized(self, n, size):
        c = self.cursor
        i = c if c < self.n and self.nums[c] == n else self._index(n)
        if i >= 0:
            self.sizes[i] = size
            self.cursor = i + 1

    def find(self, uid):
        """Index of the listed message with this UIDL (bytes), or -1."""
        p = self.uids.find(b"\n" + uid + b"\n")
        if p < 0:
            return -1
        p += 1
        offs = self.offs
        lo, hi = 0, self.n - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if offs[mid] <= p:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def uid(self, i):
        a = self.offs[i]
        return bytes(self.uids[a : self.uids.find(b"\n", a)])

    def number(self, i):
        return self.nums[i]

    def listing_done(self):
        """Match the journal against the listing: what the office has already
        is not fetched again (and is deleted, unless left on the server); an
        entry whose UIDL the ISP no longer lists is dropped from the journal
        (only when the whole mailbox was listed)."""
        complete = self.n + self.skipped == self.total and self.total < limits.POP3_LISTED
        now = _now()
        drop = [0]

        pending = []  # (index, spool id) of "P" lines: a commit a kill may have cut
        seen = [0]  # "P" lines: the journal is rewritten without them

        def match(kind, t, uid):
            if kind == PENDING:
                seen[0] += 1
                cut = uid.rfind(b" ")
                i = self.find(uid[:cut])
                if i >= 0:
                    pending.append((i, uid[cut + 1 :].decode()))
                return False  # (a rewrite drops them: resolved below, or not committed)
            i = self.find(uid)
            if i < 0:
                if complete:
                    drop[0] += 1
                return not complete
            f = self.flags[i]
            if kind == COLLECTED:
                if not f & _KNOWN:
                    self.known += 1
                f |= _KNOWN
                if self.leave and self.keep_s and now and t and now - t >= self.keep_s:
                    f |= _AGED
            else:
                f |= _NOTICED
            self.flags[i] = f
            return True

        j = self.journal
        try:
            count = 0
            for kind, t, uid in j.entries():
                match(kind, t, uid)
                count += 1
            j.count = count
            for i, sid in pending:  # committed but not journaled (killed in between)?
                if not self.flags[i] & _KNOWN and self.spool.maildrops.holds(sid):
                    log.warn("multidrop %s: message %s was committed as %s before a restart: not fetched again",
                             self.where, self.uid(i).decode(), sid)
                    j.add(COLLECTED, self.uid(i), now)
                    self.flags[i] |= _KNOWN
                    self.known += 1
            if drop[0] or j.torn or seen[0]:
                j.rewrite(match)
        except OSError as e:
            log.error("multidrop %s: the UIDL journal cannot be read or written: %s", self.where, compat.exc_text(e))
            self.stop = "UIDL journal: " + compat.exc_text(e)
            return
        for i in range(self.n):
            f = self.flags[i]
            if f & _KNOWN and (f & _AGED or not self.leave):
                self.dq.append(i)

    # ---- what to do next ---------------------------------------------------------

    def next(self):
        """(DELE, i) for what the office has (and need not stay), else (RETR, i)
        for the next message to fetch, else None (QUIT)."""
        if self.dq:
            return DELE, self.dq.pop(0)
        if self.stop:
            return None
        while self.pos < self.n:
            i = self.pos
            self.pos += 1
            f = self.flags[i]
            if f & (_KNOWN | _DONE):
                continue
            if self.sizes[i] > self.max_size:
                self.too_large += 1
                if not f & _NOTICED:
                    self._tell_postmaster(i)
                continue
            if self.journal.full():
                self.stop = "UIDL journal full"
                log.warn("multidrop %s: the UIDL journal is full (%d entries): check isp.pop3.keep_days",
                         self.where, self.journal.count)
                return None
            self.flags[i] = f | _DONE
            return RETR, i
        return None

    # ---- one message ----------------------------------------------------------

    def begin(self, i):
        """RETR i is answered +OK: a spool writer for it, our Received on top."""
        self.scan.reset()
        self.err = None
        try:
            w = self.spool.writer()
            w.write(("Received: from %s\r\n\tby %s (dialgate) with POP3 id %s;\r\n\t%s\r\n" % (
                self.host, self.cfg["hostname"], w.id, rfc5322_date(compat.wall_time()))).encode())
            self.writer = w
        except OSError as e:
            self.err = e
        return self

    def write(self, data):
        """The DotDecoder's sink: the message octets, dot-unstuffed, CRLF lines."""
        if self.scan.in_head:
            self.scan.feed(data)
        w = self.writer
        if w is not None:
            w.write(data)

    def sink_error(self, e):
        self.err = e
        return b"spool"

    def abort(self):
        w = self.writer
        self.writer = None
        if w is not None:
            w.abort()

    def retrieved(self, i, error):
        """RETR i ended: `error` None (the whole message came) or why not.
        Starts the commit to the maildrops its envelope header names and
        returns it (a spool job: the client's proto.Session.job), or None if
        the message is not taken. committed(job) journals its UIDL once the
        job has finished; only then is it queued for DELE."""
        w = self.writer
        self.writer = None
        e = self.err
        self.err = None
        if w is None or error is not None or e is not None:
            if w is not None:
                w.abort()
            self.failed += 1
            why = compat.exc_text(e) if e is not None else (error or b"").decode("utf-8", "replace").strip()
            log.warn("multidrop %s: message %s not taken: %s", self.where, self.uid(i).decode(), why)
            if e is not None:
                self.stop = "spool: " + why  # a full or failing flash will not take the next one either
            return None
        routes, how = self._routes()
        try:
            # "P" first: a kill between the commit and the "C" line below then
            # leaves the id for the next listing to find (pop3_journal).
            self.journal.pending(self.uid(i), w.id, _now())
            job = w.start_commit(self.scan.sender, routes)
        except (OSError, ValueError) as e:
            w.abort()  # (a failed start has aborted it already; a failed "P" line has not)
            self._not_taken(i, e)
            return None
        self.committing = (i, routes, how)
        return job

    def committed(self, job):
        """The commit retrieved() returned has finished: durable (job.error
        None), or nothing promised and nothing left half-done (docs/storage.md)."""
        c = self.committing
        self.committing = None
        if c is None:
            return
        i, routes, how = c
        if job.error is not None:
            self._not_taken(i, job.error)
            return
        uid = self.uid(i).decode()
        self.collected += 1
        users = []
        for r in routes:
            for u in r.users:
                if u not in users:
                    users.append(u)
        log.info("multidrop %s: %s to %s (%s), %d octets", self.where, uid, ",".join(users), how, job.size)
        try:
            self.journal.add(COLLECTED, self.uid(i), _now())
        except (OSError, ValueError) as e:  # committed but not journaled: never DELE it
            log.error("multidrop %s: the UIDL journal cannot be written: %s", self.where, compat.exc_text(e))
            self.stop = "UIDL journal: " + compat.exc_text(e)
            return
        self.flags[i] |= _KNOWN
        if not self.leave:
            self.dq.append(i)

    def _not_taken(self, i, e):
        self.failed += 1
        self.stop = "spool: " + compat.exc_text(e)
        log.warn("multidrop %s: message %s not taken: %s", self.where, self.uid(i).decode(), compat.exc_text(e))

    def deleted(self, i, ok):
        if ok:
            self.dels += 1

    def quit(self, ok):
        self.quit_ok = ok  # RFC 1939 §6: the deletions are done only now

    def left(self):
        """Messages at the ISP the office does not have (too large, failed, not reached)."""
        return self.total - self.known - self.collected

    # ---- sorting ---------------------------------------------------------------

    def _routes(self):
        """[Route] from the envelope header (or the guess), else the default user."""
        sc = self.scan
        addrs = sc.env
        how = self.env_name
        if not addrs and sc.guess:
            addrs = sc.guessed
            how = "guessed from To/Cc/Received"
        routes = []
        for a in addrs:
            r = self.router.route(a)
            if r is not None and r.kind == "local":
                routes.append(r)
        if routes:
            return routes, how + " " + ",".join(addrs)
        d = self.cfg["isp.pop3.default_user"]
        return [self._local(d)], "default: no " + ("match" if addrs else "address")

    def _local(self, name):
        addr = name + "@" + self.cfg["domains"][0]
        r = self.router.route(addr)
        return r if r is not None and r.kind == "local" else Route("local", addr, [name])

    def _tell_postmaster(self, i):
        """A message over isp.pop3.max_size stays at the ISP; the postmaster gets
        a short notice once (journaled as TOO_LARGE, so not again next call)."""
        uid = self.uid(i)
        size = self.sizes[i]
        log.warn("multidrop %s: message %s is %d octets, over isp.pop3.max_size %d: left at the ISP, postmaster told",
                 self.where, uid.decode(), size, self.max_size)
        cfg = self.cfg
        now = compat.wall_time()
        try:
            w = self.spool.writer()
        except OSError as e:
            log.error("multidrop %s: cannot tell the postmaster about message %s: %s", self.where, uid.decode(),
                      compat.exc_text(e))
            return
        text = ("From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: postmaster\r\n"
                "Subject: Too large to collect: a message left at the ISP\r\nDate: %s\r\n"
                "Message-ID: <%s@%s>\r\nAuto-Submitted: auto-generated\r\n\r\n"
                "The ISP mailbox %s holds a message of %d octets (POP3 UIDL %s).\r\n"
                "That is more than isp.pop3.max_size (%d octets), so the gateway left it\r\n"
                "there and will not try again. Fetch it with another mail client, or raise\r\n"
                "isp.pop3.max_size (the office's maildrops must have room for it).\r\n" % (
                    cfg["hostname"], rfc5322_date(now), w.id, cfg["hostname"], self.where, size,
                    uid.decode(), self.max_size)).encode()
        try:
            w.write(text)
            w.commit("", [self._local("postmaster")])
            self.journal.add(TOO_LARGE, uid, _now())
        except (OSError, ValueError) as e:
            log.error("multidrop %s: cannot tell the postmaster about message %s: %s", self.where, uid.decode(),
                      compat.exc_text(e))
        self.flags[i] |= _NOTICED


def _now():
    """Wall seconds for a journal entry, 0 while the clock is not trusted."""
    return compat.wall_time() if compat.clock_trusted() else 0
