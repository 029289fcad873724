"""`shutdown` and `restart`: stop the gateway from its console, as SIGTERM does.

An office admin on a board has no service manager and no signals: after
`config set` ("takes effect at the next start") the only other way to apply
it is the reset button. Imported on first use of either word.
"""

import asyncio

from . import compat, config
from .console import CommandError

_AFTER_S = 0.2  # time for the command's reply to leave before net closes the connections


def _stop(gw, restart):
    """Stop as SIGTERM does (app.Gateway.run's end), once the reply has been written;
    with `restart`, app.main starts the gateway again."""
    gw.restart = restart
    gw.tasks.append(asyncio.create_task(_later(gw)))


async def _later(gw):
    await asyncio.sleep(_AFTER_S)
    gw.stopping.set()


def cmd_shutdown(gw, args):
    if gw.wdt is not None:  # machine.WDT cannot be stopped: the board would reset and start again
        raise CommandError("the watchdog (board.watchdog_ms) would reset the board and start it again: "
                           "use restart, or set board.watchdog_ms 0 and restart first")
    _stop(gw, False)
    return ["stopping: a call in progress hangs up, the listeners close, then the process ends (a board: at its REPL)"]


def cmd_restart(gw, args):
    # check the saved file before stopping: a gateway that stops to find its
    # config broken would stay down until someone reaches it (docs/console.md)
    path = gw.cfg.path
    if not path:
        raise CommandError("this gateway was not started from a config file: nothing to restart from")
    note = ""
    try:
        config.load(path, gw.cfg.profile_arg)  # the same --board as at start
    except config.ConfigError as e:
        raise CommandError("config: %s (not restarted)" % e)
    except MemoryError:  # a tight board with features loaded: the start checks it instead
        note = " (too little heap free to check it first)"
    finally:
        compat.unload("dialgate.config_load")  # only the start-up needs it again
    _stop(gw, True)
    return ["restarting with %s%s: a call in progress hangs up first" % (path, note)]


def add_commands(commands):
    commands.add("shutdown", cmd_shutdown, "shutdown", "stop the gateway cleanly (hang up, close listeners, flush)")
    commands.add("restart", cmd_restart, "restart", "check the saved config, stop cleanly and start again with it")
