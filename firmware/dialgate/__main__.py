"""`python3 -m dialgate --config FILE` (with firmware/ on the path)."""

import sys

from dialgate.app import main

if __name__ == "__main__":  # importing this module does nothing
    main(sys.argv[1:])
