# MicroPython for pico_w with dialgate frozen in: make firmware BOARD=pico_w MICROPY_DIR=...
# (docs/boards.md). Written by `python -m host_tools.firmware --write-manifests`;
# tests/host/test_manifests.py holds it equal to host_tools.deploy.board_modules().
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
include("../dialgate_manifest.py")
