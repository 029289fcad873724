"""Local routing: users, aliases (fan-out, nesting, per-domain), +detail, postmaster, catch-all, remote."""

import fwtest
from dialgate.delivery import Router
from dialgate.users import UserStore


def _router(over=None, aliases=None):
    d = fwtest.tempdir("dl")
    st = UserStore(d + "/users.json", iterations=1000)
    for u in ("alice", "bob", "carol"):
        st.add(u, "pw-" + u)
    for a, t in aliases or []:
        st.alias_add(a, t)
    cfg = fwtest.host_config(over)
    return Router(cfg, st), d


def _users(router, addr):
    r = router.route(addr)
    return None if r is None else (r.kind, r.users)


def test_users_and_unknown():
    r, d = _router()
    try:
        assert _users(r, "alice@office.test") == ("local", ["alice"])
        assert _users(r, "Alice@OFFICE.test") == ("local", ["alice"])
        assert _users(r, "nobody@office.test") is None
        rt = r.route("Bob@office.test")
        assert rt.address == "Bob@office.test"  # as given
    finally:
        fwtest.rmtree(d)


def test_aliases_fan_out_and_nest():
    r, d = _router(aliases=[("team", ["alice", "bob"]), ("all", ["team", "carol", "alice"]),
                            ("sales@office.test", ["carol"])])
    try:
        assert _users(r, "team@office.test") == ("local", ["alice", "bob"])
        assert _users(r, "all@office.test") == ("local", ["alice", "bob", "carol"])
        assert _users(r, "sales@office.test") == ("local", ["carol"])
    finally:
        fwtest.rmtree(d)


def test_plus_detail_goes_to_the_user():
    r, d = _router()
    try:
        assert _users(r, "alice+lists@office.test") == ("local", ["alice"])
        assert _users(r, "nobody+x@office.test") is None
    finally:
        fwtest.rmtree(d)


def test_postmaster_is_always_deliverable():
    # RFC 5321 §4.5.1 and §4.1.1.3 (bare "postmaster")
    r, d = _router()
    try:
        assert _users(r, "postmaster@office.test") == ("local", ["postmaster"])
        assert _users(r, "PostMaster@office.test") == ("local", ["postmaster"])
        assert _users(r, "postmaster") == ("local", ["postmaster"])
    finally:
        fwtest.rmtree(d)
    r, d = _router({"delivery.postmaster": "carol"})
    try:
        assert _users(r, "postmaster@office.test") == ("local", ["carol"])
    finally:
        fwtest.rmtree(d)
    r, d = _router(aliases=[("postmaster", ["alice", "bob"])])
    try:
        assert _users(r, "postmaster@office.test") == ("local", ["alice", "bob"])
    finally:
        fwtest.rmtree(d)


def test_catch_all():
    r, d = _router({"delivery.catch_all": "bob"})
    try:
        assert _users(r, "whoever@office.test") == ("local", ["bob"])
        assert _users(r, "alice@office.test") == ("local", ["alice"])
    finally:
        fwtest.rmtree(d)


def test_bad_configured_names_never_become_directories():
    r, d = _router({"delivery.catch_all": "../x", "delivery.postmaster": "../y"})
    try:
        assert _users(r, "whoever@office.test") is None
        assert _users(r, "postmaster@office.test") == ("local", ["postmaster"])
    finally:
        fwtest.rmtree(d)


def test_remote_domains_are_remote_routes():
    r, d = _router()
    try:
        rt = r.route("Someone@isp.test")
        assert rt.kind == "remote" and rt.address == "Someone@isp.test" and rt.users == []
        assert r.route("nodomain") is None
        assert r.route("@office.test") is None
    finally:
        fwtest.rmtree(d)
