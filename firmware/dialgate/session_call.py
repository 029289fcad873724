"""One call, driven (`SessionRunner.call` imports this for it): a
session.DialSession's actions carried out through the link and the relay,
the cost record written, and the line down at the end whatever happened.
Loaded for a call and unloaded with the phase machine between calls
(app_unload.FEATURES "call"), so a board keeps only the scheduler and the task."""

import asyncio

from . import compat, log, scheduler
from . import session as S
from .compat import const

_POLL_MS = const(250)  # how often a running dial or flush is looked at
_TICK_MS = const(1000)  # how often the phase machine is asked


async def run_call(sr, kind, why):
    """One call for the SessionRunner `sr`: a DialSession driven through the link
    and the relay, the line always down at the end, the record written."""
    gw = sr.gw
    t = compat.ticks_ms()
    trusted = compat.clock_trusted()
    wall = compat.wall_time() if trusted else 0
    if sr.n < 0:  # the cost log numbers the calls; an older spool kept the count in relay.json
        had = "costlog" in gw.__dict__
        sr.n = max(gw.costlog.last_number(), gw.relay.state.legacy_session)
        if not had and gw.cfg["board.unload_after"] > 0:
            # read once: where features unload, its code (8.5 KB as .mpy) is not kept through
            # the call's peak (link, queue run, SMTP server at once); _finish loads it again
            compat.drop_attr(gw, "costlog")
            compat.unload("dialgate.costlog")
    if gw.cfg["board.unload_after"] > 0:
        # the submission that started the call must not keep the SMTP server
        # through the dial and the queue run (docs/architecture.md, "Memory")
        from .app_unload import unload_unused

        unload_unused(gw)
    sr.n += 1
    s = S.DialSession(sr.cfg, sr.n, kind, why, t, wall)
    s.record["queued"] = len(gw.outq)  # mail waiting when the call began (the report's queue depth)
    sr.current = s
    sr.last_start = t
    if trusted:  # a call serves the window/time slot it falls on, whatever started it
        sr.last_slot = scheduler.slot_due(sr.plan, wall, sr.last_slot) or sr.last_slot
    sr.requested = ""
    sr.stop_why = ""
    log.info("session %d: calling (%s: %s)", sr.n, kind, why)
    link = gw.link
    relay = gw.relay
    spool = gw.spool
    in0 = spool.delivered_local
    task = None
    box = [None]  # what the running dial or flush returned
    doing = None
    flushes = 0
    bytes_seen = -1
    active = t
    last_tick = t
    act = s.start()
    try:
        while act != S.DONE:
            if act == S.DIAL:
                doing = act
                task = _spawn(link.up(), box)
            elif act == S.FLUSH:
                if flushes == 0:
                    relay.begin_session()
                flushes += 1
                doing = act
                task = _spawn(relay.flush(s.etrn_now), box)
            elif act == S.COLLECT:
                doing = act
                task = _spawn(_collect(gw, list(s.collect)), box)
            elif act == S.HANGUP:
                await _end_task(task, doing, link)
                task = None
                await link.down()
                act = s.hung_up(compat.ticks_ms(), link.bytes_in, link.bytes_out, spool.delivered_local - in0)
                continue
            act = None
            while act is None:
                await asyncio.sleep(_POLL_MS / 1000)
                now = compat.ticks_ms()
                if task is not None and task.done():
                    res = box[0]
                    box[0] = None
                    task = None
                    if doing == S.DIAL:
                        if res == "up":
                            log.info("session %d: online at %d bps", s.n, link.speed)
                            _set_clock(None)
                        act = s.dialled(res, link.speed, link.dial_results, now)
                    elif doing == S.COLLECT:
                        act = s.collected(res or [("ask", "retry", 0, "internal error (see log)")], now)
                    else:
                        _set_clock(relay.greeting)
                        err = relay.run_error if res is not None else "flush failed (see log)"
                        asked = s.etrn_now
                        act = s.flushed(relay.run_delivered, err, relay.etrn_results, now)
                        if asked:
                            _log_ask(s)
                        _drop_queue_run(gw)
                    if act is not None:
                        break
                if sr.stop_why:
                    act = s.stop(sr.stop_why)
                    sr.stop_why = ""
                    if act is not None:
                        break
                b = link.bytes_in + link.bytes_out
                if b != bytes_seen:
                    bytes_seen = b
                    active = now
                active = _conn_activity(sr, active)
                if compat.ticks_diff(now, last_tick) < _TICK_MS:
                    continue
                last_tick = now
                act = s.tick(now, link.is_up(), active, sr.queue_state(now, compat.wall_time())[0] > 0, task is not None)
    except asyncio.CancelledError:  # the gateway is stopping: never leave the line up
        await _abort(sr, s, task, doing, link, spool.delivered_local - in0, "gateway stopping", "")
        raise
    except Exception as e:  # a bug or no heap: still hang up, record it, retry later
        log.exception("session %d" % s.n, e)
        await _abort(sr, s, task, doing, link, spool.delivered_local - in0, "internal error",
                     "internal error: " + compat.exc_text(e))
        return
    _finish(sr, s)


async def _abort(sr, s, task, doing, link, msgs_in, why, failure):
    """End a call the loop could not finish: stop what runs, hang up, keep the record."""
    s.stop(why)
    if failure and not s.failure:
        s.failure = failure
    try:
        await _end_task(task, doing, link)
    finally:
        await link.down()  # never raises (link.py)
        s.hung_up(compat.ticks_ms(), link.bytes_in, link.bytes_out, msgs_in)
        _finish(sr, s)


async def _end_task(task, doing, link):
    """Stop a dial or flush still running before the line goes down."""
    if task is None or task.done():
        return
    if doing == "dial":  # session.DIAL
        await link.down()  # stops the dialler; up() then returns
    else:
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as e:
        log.exception("session", e)


def _finish(sr, s):
    r = s.record
    sr.current = None
    t = compat.ticks_ms()
    sr.last_end = t
    sr.recent.append((sr.last_start, r["start"], r["online"]))
    if s.ok:
        sr.fails = 0
        sr.fail_why = ""
    else:
        sr.fails += 1
        sr.fail_why = s.failure
    sr.last_result = "%s: %s, %d s online, %d out / %d in%s" % (
        r["end"], "ok" if s.ok else "FAILED (" + s.failure + ")", r["online"], r["msgs_out"], r["msgs_in"],
        (", " + r["ask"]) if r["ask"] else "")
    log.info("session %d: ended (%s); %s", s.n, r["end"], sr.last_result)
    if r["end"] == "carrier lost" and sr.gw.relay.lost:
        from .relay_run import line_lost

        line_lost(sr.gw.relay)
    sr.gw.costlog.append(r)


async def _collect(gw, ways):
    from .inbound import collect  # ODMR / POP3 multidrop: loaded for the call that asks

    return await collect(gw, ways)


def _drop_queue_run(gw):
    """Where features unload, one queue run's code (relay_run, smtp_client: about
    25 KB as .mpy) goes as soon as the flush has ended rather than
    board.unload_after (60 s on a board) later: the mail ETRN asked for arrives
    in the same call and loads the SMTP server (docs/architecture.md, "Memory")."""
    if gw.cfg["board.unload_after"] > 0 and not gw.relay.running:
        from .app_unload import unload_now

        unload_now(gw, "relay_run")


def _log_ask(s):
    if s.record["ask"].startswith("ETRN 5"):
        log.error("session %d: the ISP refused ETRN %s (%s): check session.etrn", s.n,
                  ",".join(s.etrn), s.record["ask"])


def _set_clock(greeting):
    """Trust the clock once the link is up: NTP where the runtime has it, else
    the date in the ISP's SMTP greeting (docs/sessions.md, "Clock")."""
    if compat.clock_trusted():
        return
    t = 0
    if greeting is None:
        from .compat_relay import ntp_time  # the network side of the runtime (NTP over the link)

        t = ntp_time() or 0
        how = "NTP"
    else:
        from .retry import parse_date

        t = parse_date(greeting.decode("utf-8", "replace")) if greeting else 0
        how = "the ISP's greeting"
    if compat.clock_ok(t):
        step = compat.set_wall(t)
        log.info("clock: set from %s (stepped %d s); time-of-day windows apply now", how, step)


def _conn_activity(sr, active):
    """The newest octet of an SMTP session (the ISP delivering through ETRN)."""
    for c in sr.gw.net.conns:
        if c.kind == "smtp" and compat.ticks_diff(c.last, active) > 0:
            active = c.last
    return active


def _spawn(coro, box):
    """Run `coro` as a task that leaves its result in box[0] (None if it raised)."""

    async def run():
        try:
            box[0] = await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("session", e)
            box[0] = None

    return asyncio.create_task(run())
