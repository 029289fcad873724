"""The parts of app.Gateway the queue runner uses, over a real spool: shared by
relayfake (fake smarthost), tests/host/test_relay_postfix.py and
tests/host/upy_relay.py (a real Postfix, on CPython and on MicroPython)."""


class Users:
    """users.UserStore's expand() for the router (the real store costs 20 KB of heap)."""

    def expand(self, name):
        return ["alice"] if name in ("alice", "alice@office.test") else []


class Link:
    def __init__(self, up=True):
        self.up = up
        self.smtp_addr = None

    def is_up(self):
        return self.up


def wire(gw, cfg, root, net=True):
    """Give `gw` a recovered spool at `root`, its queue and maildrops, a router,
    a link that is up, the transport and a relay: what relay.Relay reads from the gateway."""
    from dialgate.delivery import Router
    from dialgate.relay import Relay
    from dialgate.spool import Spool

    gw.cfg = cfg
    gw.spool = Spool(root, 0)
    gw.spool.recover()
    gw.outq = gw.spool.queue
    gw.maildrops = gw.spool.maildrops
    gw.users = Users()
    gw.router = Router(cfg, gw.users)
    gw.link = Link()
    if net:
        from dialgate.net import Net

        gw.net = Net(cfg["board.buffer"], cfg["net.max_connections"])
    else:
        gw.net = None  # relayfake fakes the smarthost: no connection, and no heap for net's code
    gw.relay = Relay(gw)
    return gw
