"""One dial-up call as a sans-IO phase machine (docs/sessions.md): dial -> link up
-> flush the outbound queue -> ask the ISP for held mail -> linger while mail
arrives -> hang up -> cost record. `DialSession` decides; `session_run` carries
out its actions (the link, the relay) and feeds it what happened. It is the only
code that says when the line goes up and down.
"""

from .compat import const, ticks_add, ticks_diff

# Actions for the driver (session_run), returned by the methods below.
DIAL = "dial"  # link.up(), then dialled()
FLUSH = "flush"  # relay.flush(etrn=s.etrn_now), then flushed()
COLLECT = "collect"  # inbound.collect(gw, s.collect) (ODMR, POP3 multidrop), then collected()
HANGUP = "hangup"  # link.down(), then hung_up()
DONE = "done"  # write s.record to the cost log

_ASK_TRIES = const(3)  # ETRN tries in one call (4xx or no connection)
_ASK_PAUSE_MS = const(5000)  # between two of them

# Phases (s.phase)
DIALLING = "dialling"
FLUSHING = "flushing"
ASKING = "asking"  # waiting ASK_PAUSE_MS to ask again
COLLECTING = "collecting"  # ODMR / POP3 multidrop: the held mail comes in
LINGERING = "lingering"
HANGING_UP = "hanging up"
_ENDED = const("done")


class DialSession:
    """One call. `n`: session number; `trigger`/`why`: what the scheduler said;
    `now`: ticks (ms); `wall`: Unix seconds if the clock is trusted, else 0.

    Durations come from the config: `session.idle_hangup` (quiet seconds before
    hanging up), `session.min_online` (seconds the ISP's flush gets to start after
    the ask), `session.max_online` (the one deadline for the whole call),
    `session.etrn` (domains to ask for by ETRN) and the other two ways of
    asking (`collect`: "odmr" when isp.odmr.host is set, "pop3" when
    isp.pop3.host is), run once a call
    after the queue and the ETRN (docs/inbound.md).
    `record` is the cost record (costlog) once hung_up() returned DONE.
    """

    def __init__(self, cfg, n, trigger, why, now, wall=0):
        self.idle_ms = cfg["session.idle_hangup"] * 1000
        self.min_ms = cfg["session.min_online"] * 1000
        self.max_ms = cfg["session.max_online"] * 1000
        self.etrn = list(cfg["session.etrn"])
        self.collect = ["odmr"] if cfg["isp.odmr.host"] else []
        if cfg["isp.pop3.host"]:
            self.collect.append("pop3")
        self.n = n
        self.phase = DIALLING
        self.t0 = now
        self.t_up = None  # ticks the line came up
        self.t_asked = None  # ticks the ask phase ended (the ISP's flush may start)
        self.ask_at = None
        self.asks = 0
        self.etrn_now = None  # domains the current FLUSH asks for (None: the queue alone)
        self.failure = ""  # why this call failed (empty: it did its work)
        self.flush_error = ""
        self.record = {"n": n, "start": wall, "trigger": trigger, "why": why, "dials": [], "speed": 0,
                       "online": 0, "bytes_in": 0, "bytes_out": 0, "msgs_in": 0, "msgs_out": 0,
                       "ask": "", "end": "", "ok": False}

    @property
    def ok(self):
        return not self.failure

    def start(self):
        return DIAL

    def _fail(self, why):
        if not self.failure:
            self.failure = why

    def _hangup(self, end, failure=""):
        if failure:
            self._fail(failure)
        if not self.record["end"]:
            self.record["end"] = end
        self.phase = HANGING_UP
        return HANGUP

    # ---- what happened -------------------------------------------------------

    def dialled(self, outcome, speed, results, now):
        """link.up() returned `outcome` ("up" or why not: "busy", "no-carrier",
        "ppp-failed" ...); `results`: each dial attempt's result, in order."""
        self.record["dials"] = list(results) if results else [outcome]
        if self.phase != DIALLING:  # hung up while dialling (operator, deadline)
            return self._hangup(self.record["end"] or "stopped")
        if outcome != "up":
            return self._hangup(outcome, outcome)
        self.t_up = now
        self.record["speed"] = speed
        self.phase = FLUSHING
        self.etrn_now = self.etrn or None  # ETRN rides on the queue run's connection
        return FLUSH

    def flushed(self, delivered, error, etrn_results, now):
        """relay.flush() is done: `delivered` messages went out; `error` says why
        the smarthost could not be reached ("" if it could); `etrn_results`
        [(code, text)] answer this flush's ETRN (empty: none was sent)."""
        self.record["msgs_out"] += delivered
        if error and not delivered:
            self.flush_error = error
        asked = self.etrn_now
        self.etrn_now = None
        if self.phase == HANGING_UP or self.phase == _ENDED:
            return None
        if asked:
            return self._asked(asked, etrn_results, now)
        if self.phase == FLUSHING:
            return self._linger(now)
        return None

    def _asked(self, asked, results, now):
        """RFC 1985 §5: 250 (queuing started), 251-253 (none or already queued) end
        the ask; 4xx (458, 459) or no answer: ask again, ASK_TRIES times; 5xx
        (500-501 syntax, 459 denied...) will not change by asking again."""
        self.asks += 1
        if results:
            self.record["ask"] = "ETRN " + ",".join([str(r[0]) for r in results])
            codes = [r[0] // 100 for r in results]
            if 4 not in codes:
                if 5 in codes:
                    self.record["ask"] += " (refused: check session.etrn)"
                return self._linger(now)
        else:
            self.record["ask"] = "ETRN not sent"
        if self.asks < _ASK_TRIES:
            self.phase = ASKING
            self.ask_at = ticks_add(now, _ASK_PAUSE_MS)
            return None
        if self.flush_error:  # nobody to talk to: no point waiting on the line
            return self._hangup("smarthost unreachable", "smarthost unreachable: " + self.flush_error)
        self._fail(self.record["ask"])
        return self._linger(now)

    def _linger(self, now):
        if self.collect:  # the other ways of asking go after the queue and ETRN
            self.phase = COLLECTING
            return COLLECT
        self.phase = LINGERING
        self.t_asked = now
        if self.flush_error and not self.etrn and not self.collected_any:
            return self._hangup("smarthost unreachable", "smarthost unreachable: " + self.flush_error)
        return None

    collected_any = False

    def collected(self, results, now):
        """The collect actions are done: `results` [(word, how, code, text)], one
        per way asked: ("ATRN", odmr_client's REVERSED / NO_MAIL / LATER /
        CONFIG, its reply code, its text) or ("POP3", pop3_client's DONE /
        LATER / CONFIG, messages collected, "N left" or why it failed).
        "retry" and "refused" fail the call (the scheduler's redial tries
        again; the record and the log say why). The record's `ask` gets e.g.
        `ATRN 250` or `POP3 12 (3 left)`."""
        self.collect = []
        self.collected_any = True
        if self.phase == HANGING_UP or self.phase == _ENDED:
            return None
        parts = [self.record["ask"]] if self.record["ask"] else []
        for word, how, code, text in results:
            ok = how in ("reversed", "no mail", "collected")
            n = str(code) if code or how == "collected" or word == "POP3" else "-"
            if how == "collected":
                parts.append("%s %s%s" % (word, n, (" (" + text + ")") if text else ""))
            else:
                parts.append("%s %s%s" % (word, n, "" if ok else " (" + how + ")"))
            if not ok:
                self._fail("%s %s: %s" % (word, n, text))
        self.record["ask"] = "; ".join(parts)
        return self._linger(now)

    def tick(self, now, up, last_active, due, busy):
        """Called about once a second. `up`: the link is up; `last_active`: ticks
        of the last octet moved either way (link counters, an SMTP session);
        `due`: messages are due in the queue; `busy`: a flush is running.
        Returns an action or None."""
        ph = self.phase
        if ph == HANGING_UP or ph == _ENDED:
            return None
        if ticks_diff(now, self.t0) >= self.max_ms:
            return self._hangup("max_online", "" if ph == LINGERING else "max_online before the work was done")
        if ph == DIALLING:
            return None
        if not up:
            return self._hangup("carrier lost", "carrier lost while " + ph)
        if busy:
            return None
        if ph == ASKING:
            if ticks_diff(now, self.ask_at) >= 0:
                self.phase = FLUSHING
                self.etrn_now = self.etrn
                return FLUSH
            return None
        if ph != LINGERING:
            return None
        if due:
            return FLUSH  # mail queued while online goes in this call
        quiet = ticks_diff(now, last_active)
        if quiet >= self.idle_ms and ticks_diff(now, self.t_asked) >= self.min_ms:
            return self._hangup("idle")
        return None

    def stop(self, why):
        """Hang up now (the operator's `hangup`, the gateway stopping)."""
        if self.phase == HANGING_UP or self.phase == _ENDED:
            return None
        return self._hangup(why)

    def hung_up(self, now, bytes_in, bytes_out, msgs_in):
        """The line is down: fill in the cost record. Returns DONE."""
        r = self.record
        if self.t_up is not None:
            r["online"] = (ticks_diff(now, self.t_up) + 500) // 1000
        r["bytes_in"] = bytes_in
        r["bytes_out"] = bytes_out
        r["msgs_in"] = msgs_in
        r["ok"] = not self.failure
        self.phase = _ENDED
        return DONE

