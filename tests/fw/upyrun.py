"""MicroPython-side test runner: `micropython upyrun.py MODULE` runs MODULE's test_* functions.

Prints PASS/FAIL/SKIP per test and a last line `RESULT passed failed skipped`.
"""

import gc
import sys


def main():
    name = sys.argv[1]
    only = sys.argv[2] if len(sys.argv) > 2 else None
    mod = __import__(name)
    from fwtest import Skip

    passed = failed = skipped = 0
    for k in sorted(dir(mod)):
        if not k.startswith("test_") or (only and k != only):
            continue
        f = getattr(mod, k)
        gc.collect()
        try:
            f()
            passed += 1
            print("PASS", name, k)
        except Skip as e:
            skipped += 1
            print("SKIP", name, k, e)
        except Exception as e:
            failed += 1
            print("FAIL", name, k)
            sys.print_exception(e)
    print("RESULT", passed, failed, skipped)


main()
