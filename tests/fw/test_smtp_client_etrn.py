"""relay.etrn: once per online session the runner asks the smarthost to release
the office's held mail (ETRN, RFC 1985), on the queue run's connection."""

import asyncio

from relayfake import done, new_gw, queue

from dialgate import compat

ETRN = {"relay.etrn": ["office.test"]}


def tick(gw):
    gw.relay.last_due = compat.ticks_ms() - 60000  # the due-check interval has passed
    asyncio.run(gw.relay.tick())


def test_etrn_alone_once_per_session():
    gw = new_gw("ret", ETRN)
    try:
        tick(gw)  # the link is up: a new session, nothing queued
        assert [s.commands for s in gw.servers] == [["ETRN office.test"]]
        assert gw.relay.etrn_results == [(250, b"2.0.0 queuing started")]
        tick(gw)
        tick(gw)
        assert len(gw.servers) == 1  # answered: not again in this session
        gw.link.up = False
        tick(gw)
        gw.link.up = True
        tick(gw)  # the next session asks again
        assert len(gw.servers) == 2 and gw.servers[1].commands == ["ETRN office.test"]
    finally:
        done(gw)


def test_etrn_after_the_queue_on_the_same_connection():
    gw = new_gw("reu", ETRN)
    try:
        queue(gw, ["bob@example.com"])
        tick(gw)
        assert len(gw.servers) == 1
        assert gw.servers[0].commands == ["MAIL FROM:<alice@office.test>", "ETRN office.test"]
        assert gw.outq.ids() == []
    finally:
        done(gw)


def test_failed_etrn_is_tried_three_times_then_rests():
    gw = new_gw("rev", ETRN)
    try:
        gw.script[None] = {"replies": {"ETRN": "458 4.0.0 unable to queue messages for office.test"}}
        for _ in range(5):
            tick(gw)
        assert len(gw.servers) == 3  # 4xx: again at the due-check pace, 3 tries per session
        assert gw.relay.etrn_left == 0
        gw.script[None] = OSError(111, "connection refused")
        gw.link.up = False
        tick(gw)
        gw.link.up = True
        for _ in range(5):
            tick(gw)
        assert gw.relay.etrn_left == 0 and len(gw.servers) == 3  # refused: tried, nothing answered
        gw.script[None] = {"replies": {"ETRN": "501 5.5.4 bad domain"}}
        gw.link.up = False
        tick(gw)
        gw.link.up = True
        for _ in range(3):
            tick(gw)
        assert len(gw.servers) == 4  # 5xx: asking again will not help
    finally:
        done(gw)


def test_no_etrn_without_the_setting():
    gw = new_gw("rew")
    try:
        tick(gw)
        tick(gw)
        assert gw.servers == []  # nothing queued, no ETRN: the line stays quiet
    finally:
        done(gw)
