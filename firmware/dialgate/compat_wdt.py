"""The hardware watchdog of a board (part of the compat family): loaded only
where a profile sets `board.watchdog_ms`, so a PC never imports it."""


def watchdog(timeout_ms):
    """The hardware watchdog (machine.WDT) started with `timeout_ms`, or None where
    there is none (CPython, the unix port) or `timeout_ms` is 0. Once started it
    cannot be stopped: the event loop must feed() it more often than that, or the
    board resets (and the spool's recovery at boot makes that safe)."""
    if timeout_ms <= 0:
        return None
    try:
        import machine  # type: ignore
    except ImportError:
        return None
    wdt = getattr(machine, "WDT", None)
    if wdt is None:
        return None
    return wdt(timeout=timeout_ms)
