# MicroPython for esp32s3 with dialgate frozen in: make firmware BOARD=esp32s3 MICROPY_DIR=...
# (docs/boards.md). Written by `python -m host_tools.firmware --write-manifests`;
# tests/host/test_manifests.py holds it equal to host_tools.deploy.board_modules().
include("$(PORT_DIR)/boards/manifest.py")
include("../dialgate_manifest.py")
