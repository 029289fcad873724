"""Console commands of the user store: user add/del/passwd/list, alias
add/del/list. Imported on the first `user` or `alias` command, so routing mail
through the store (gw.users) does not load them."""

from .console import CommandError, need


def cmd_user_add(gw, args):
    need(args, 2, "user add NAME PASSWORD")
    try:
        gw.users.add(args[0].lower(), args[1])
    except ValueError as e:
        raise CommandError(str(e))
    return ["user %s added" % args[0].lower()]


def cmd_user_del(gw, args):
    need(args, 1, "user del NAME")
    name = args[0].lower()
    if not gw.users.exists(name):
        raise CommandError("no user %s" % name[:64])
    md = getattr(gw, "maildrops", None)
    if md is not None and md.is_locked(name):
        raise CommandError("maildrop of %s is in use (POP3 session)" % name)
    gw.users.delete(name)
    n = 0
    if md is not None:
        n = md.count(name)
        md.remove_all(name)
    return ["user %s deleted (%d messages removed)" % (name, n)]


def cmd_user_passwd(gw, args):
    need(args, 2, "user passwd NAME PASSWORD")
    try:
        gw.users.set_password(args[0].lower(), args[1])
    except ValueError as e:
        raise CommandError(str(e))
    return ["password of %s changed" % args[0].lower()]


def cmd_user_list(gw, args):
    md = getattr(gw, "maildrops", None)
    out = []
    for name in gw.users.list():
        n = md.count(name) if md is not None else 0
        out.append("%s  %d messages%s" % (name, n, "  (APOP)" if gw.users.apop_secret(name) else ""))
    if not out:
        out.append("(no users)")
    return out


def cmd_alias_add(gw, args):
    need(args, 2, "alias add ADDRESS TARGET...")
    try:
        gw.users.alias_add(args[0], args[1:])
    except ValueError as e:
        raise CommandError(str(e))
    return ["alias %s -> %s" % (args[0].lower(), " ".join(gw.users.aliases()[args[0].lower()]))]


def cmd_alias_del(gw, args):
    need(args, 1, "alias del ADDRESS")
    try:
        gw.users.alias_del(args[0])
    except ValueError as e:
        raise CommandError(str(e))
    return ["alias %s deleted" % args[0].lower()]


def cmd_alias_list(gw, args):
    al = gw.users.aliases()
    out = ["%s -> %s" % (a, " ".join(al[a])) for a in sorted(al)]
    return out or ["(no aliases)"]


def add_commands(commands):
    """Console: user add/del/passwd/list, alias add/del/list."""
    commands.add("user add", cmd_user_add, "user add NAME PASSWORD", "add a mail user", secret=True)
    commands.add("user del", cmd_user_del, "user del NAME", "delete a user and its maildrop")
    commands.add("user passwd", cmd_user_passwd, "user passwd NAME PASSWORD", "set a user's password", secret=True)
    commands.add("user list", cmd_user_list, "user list", "users and waiting messages")
    commands.add("alias add", cmd_alias_add, "alias add ADDRESS TARGET...", "deliver ADDRESS to users/aliases")
    commands.add("alias del", cmd_alias_del, "alias del ADDRESS", "remove an alias")
    commands.add("alias list", cmd_alias_list, "alias list", "all aliases")
