"""vagrant/Vagrantfile cannot boot here (no boxes offline): validate it with Debian's vagrant."""

import os
import subprocess

from ..requires import require_tool

VAGRANT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "vagrant")


def test_vagrantfile_validates(tmp_path):
    require_tool("vagrant")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path), VAGRANT_CHECKPOINT_DISABLE="1")
    r = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT_DIR, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully" in r.stdout


def test_boxes_use_the_readme_setup_and_record_the_lab():
    with open(os.path.join(VAGRANT_DIR, "Vagrantfile")) as f:
        text = f.read()
    assert '"v2" =>' in text and '"v1" =>' in text and "systemd.unified_cgroup_hierarchy=0" in text
    assert "./setup.sh" in text and 'oomscope record --lab "$scenario"' in text
