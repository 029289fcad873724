"""Board entry: `micropython firmware/main.py --config FILE`, or boot on a board.

On a board there is no command line: the config is /config.json.
"""

import sys


def _argv():
    argv = list(getattr(sys, "argv", []) or [])[1:]
    if not argv:
        argv = ["--config", "/config.json"]
    return argv


def _run():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    if here not in sys.path:
        sys.path.insert(0, here)
    from dialgate.app import main

    main(_argv())


if __name__ == "__main__":
    _run()
