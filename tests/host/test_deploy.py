"""make flash: the staged board image is complete and boots under the unix port."""

import subprocess
from pathlib import Path

from gateway import UPY
from host_tools import deploy


def test_stage_compiles_every_module_and_copies_profile(tmp_path):
    files = deploy.stage("pico_w", None, None, tmp_path)
    remote = {r for _, r in files}
    assert ":main.py" in remote and ":config.json" in remote and ":boards/pico_w.json" in remote
    src = {p.stem for p in (Path(deploy.ROOT) / "firmware" / "dialgate").glob("*.py")} - {"__main__"}
    assert {r.rsplit("/", 1)[1][:-4] for r in remote if r.endswith(".mpy")} == src
    assert ":lib/dialgate/schema.json" in remote
    for local, _ in files:
        assert local.exists()


def test_staged_image_imports_under_micropython(tmp_path):
    deploy.stage("pico_w", None, None, tmp_path)
    r = subprocess.run([UPY, "-X", "heapsize=128K", "-c",
                        "import sys; sys.path.insert(0, 'lib'); import dialgate.app; print('ok')"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "ok", r.stderr


def test_dry_run_lists_mpremote_commands(capsys):
    assert deploy.main(["--board", "esp32", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "mpremote connect PORT fs mkdir :lib" in out
    assert "fs cp" in out and ":lib/dialgate/app.mpy" in out and out.strip().endswith("reset")
