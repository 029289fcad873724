"""Changes to the user store (UserStore.add, set_password, delete,
alias_add, alias_del): the console's `user` and `alias` commands are the only
callers, so this code is imported by the first change and mail served through
the store never loads it (users.py keeps what routing and logins need)."""

import json

from .compat import const
from .mailbox import valid_user
from .users import hash_password

_MAX_TARGETS = const(32)


def valid_password(pw):
    if not 0 < len(pw) <= 128:
        return False
    for c in pw:
        if ord(c) < 0x21 or ord(c) > 0x7E:
            return False
    return True


def add(st, name, password):
    if not valid_user(name):
        raise ValueError("bad user name %s (a-z 0-9 . _ -, up to 64)" % name[:64])
    if name in st._users:
        raise ValueError("user %s exists" % name)
    if name in st._aliases:
        raise ValueError("%s is an alias" % name)
    _set(st, name, password)


def set_password(st, name, password):
    if name not in st._users:
        raise ValueError("no user %s" % name[:64])
    _set(st, name, password)


def _set(st, name, password):
    if not valid_password(password):
        raise ValueError("bad password (1-128 printable characters, no spaces)")
    st._users[name] = hash_password(password, st.iterations)
    sec = _secrets(st)
    if st.apop:
        sec[name] = password
        _save_apop(st, sec)
    elif name in sec:  # APOP off: the old password's secret must not outlive it (nor stay in the clear)
        del sec[name]
        _save_apop(st, sec)
    _save(st)


def delete(st, name):
    if name not in st._users:
        raise ValueError("no user %s" % name[:64])
    del st._users[name]
    st._right.pop(name, None)
    _save(st)
    sec = _secrets(st)
    if name in sec:
        del sec[name]
        _save_apop(st, sec)


def _secrets(st):
    """The APOP secrets as on flash: the store holds them while APOP is on; with
    it off they are read here, so a new password or a deleted user still drops
    the old secret, which turning APOP on again would otherwise bring back."""
    if st.apop:
        return st._apop
    from .users import _read_json

    return _read_json(st.path + ".apop")


def alias_add(st, address, targets):
    address = address.lower()
    lp = address.split("@", 1)[0]
    if not lp or " " in address or address.count("@") > 1:
        raise ValueError("bad alias address %s" % address[:64])
    if not 0 < len(targets) <= _MAX_TARGETS:
        raise ValueError("an alias needs 1 to %d targets" % _MAX_TARGETS)
    if address in st._users:
        raise ValueError("%s is a user" % address)
    out = []
    for t in targets:
        t = t.lower()
        if t not in st._users and t not in st._aliases:
            raise ValueError("no user or alias %s" % t[:64])
        if t == address:
            raise ValueError("an alias cannot point at itself")
        if t not in out:
            out.append(t)
    st._aliases[address] = out
    _save(st)


def alias_del(st, address):
    address = address.lower()
    if address not in st._aliases:
        raise ValueError("no alias %s" % address[:64])
    del st._aliases[address]
    _save(st)


def _save(st):
    text = json.dumps({"users": st._users, "aliases": st._aliases})
    _put(st.path, text)


def _save_apop(st, sec):
    _put(st.path + ".apop", json.dumps(sec))


def _put(path, text):
    from .spool import Flash  # (resident in a running gateway; `console passwd` needs none of it)

    Flash().put(path, path + ".tmp", text, True)  # compat.settle() in users puts it back after a cut
