"""`help`, and the rows of what the console session answers itself (login,
quit) so that help lists them. Imported on the first `help` or `login`."""

from . import compat
from .console import CommandError


def cmd_help(gw, args):
    """Every command's usage and summary: each lazy group is loaded, read and
    unloaded again in turn (unless it was loaded before), so the heap holds one
    group at a time, not all of them (a board's budget)."""
    cmds = gw.commands
    rows = {}  # name -> (usage, summary)

    def take():
        t = cmds.table
        for k in t:
            rows[k] = (t[k][1], t[k][2])

    take()
    for word in list(cmds.lazy):
        if word in cmds.lazy:  # not loaded with an earlier word's group
            had = list(cmds.loaded)
            cmds.load(word)
            take()
            cmds.unload(had)
            compat.gc_collect()
    if args:
        want = " ".join(args)
        if want not in rows:
            raise CommandError("no command %s" % want)
        return [rows[want][0], "  " + rows[want][1]]
    names = sorted(rows)
    width = 0
    for n in names:
        width = max(width, len(rows[n][0]))
    return [rows[n][0] + " " * (width - len(rows[n][0]) + 2) + rows[n][1] for n in names]


def cmd_login(gw, args):
    # a LockedConsole answers `login` itself: here no password is set
    return ["no console password is set (console.password)"]


def cmd_quit(gw, args):
    raise CommandError("the console session answers quit itself")


def add_commands(commands):
    commands.add("help", cmd_help, "help [COMMAND]", "list commands, or show one")
    commands.add("login", cmd_login, "login PASSWORD", "log in (when console.password is set)", secret=True)
    commands.add("quit", cmd_quit, "quit", "end a TCP session; on the UART: log out")
