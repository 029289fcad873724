"""`python3 -m dialgate --config FILE` (with firmware/ on the path)."""

import sys

from dialgate.app import main

main(sys.argv[1:])
