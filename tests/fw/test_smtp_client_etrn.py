"""relay.flush(etrn=...): the dial session asks the smarthost to release the
office's held mail (ETRN, RFC 1985) on the queue run's connection, or on a
connection of its own when nothing is queued. When and how often is the
session's business (test_session.py); the relay only flushes once per call."""

import asyncio

from relayfake import done, new_gw, queue


def flush(gw, etrn=("office.test",)):
    return asyncio.run(gw.relay.flush(list(etrn) if etrn else None))


def test_etrn_alone_when_nothing_is_queued():
    gw = new_gw("ret")
    try:
        flush(gw)
        assert [s.commands for s in gw.servers] == [["ETRN office.test"]]
        assert gw.relay.etrn_results == [(250, b"2.0.0 queuing started")]
        assert gw.relay.run_error == "" and gw.relay.run_delivered == 0
        flush(gw, None)
        assert len(gw.servers) == 1  # no ETRN asked, nothing queued: the line stays quiet
    finally:
        done(gw)


def test_etrn_after_the_queue_on_the_same_connection():
    gw = new_gw("reu")
    try:
        queue(gw, ["bob@example.com"])
        flush(gw)
        assert len(gw.servers) == 1
        assert gw.servers[0].commands == ["MAIL FROM:<alice@office.test>", "ETRN office.test"]
        assert gw.outq.ids() == [] and gw.relay.run_delivered == 1
    finally:
        done(gw)


def test_refused_connection_is_reported_for_the_session():
    gw = new_gw("rev")
    try:
        gw.script[None] = OSError(111, "connection refused")
        queue(gw, ["bob@example.com"])
        flush(gw)
        assert gw.relay.etrn_results == []  # nothing answered
        assert "connection refused" in gw.relay.run_error, gw.relay.run_error
        assert len(gw.outq.ids()) == 1  # kept for the next call
        gw.script[None] = {"replies": {"ETRN": "458 4.0.0 unable to queue messages for office.test"}}
        gw.relay.begin_session()
        flush(gw)
        assert gw.relay.etrn_results == [(458, b"4.0.0 unable to queue messages for office.test")]
    finally:
        done(gw)


def test_flush_with_the_link_down_does_nothing():
    gw = new_gw("rew")
    try:
        gw.link.up = False
        assert flush(gw) == "link down"
        assert gw.servers == [] and gw.relay.run_error == "link down"
    finally:
        done(gw)
