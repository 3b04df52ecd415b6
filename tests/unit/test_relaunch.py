"""A module of oomscope run in a new interpreter (oomscope/relaunch.py: the post-mortem worker,
record after its options are parsed) is this oomscope's, never one in the working folder: a root
process started in a folder others can write would otherwise import their code."""

import subprocess

import pytest

from oomscope.relaunch import module_command

PLANTED = "raise SystemExit('planted code ran')\n"


@pytest.mark.parametrize("safe_path_flag", [True, False], ids=["python -P", "older python: -c stub"])
def test_a_planted_oomscope_in_the_working_folder_is_never_imported(tmp_path, safe_path_flag):
    for rel in ("oomscope/__init__.py", "oomscope/record/__init__.py", "oomscope/record/main.py", "runpy.py", "json.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(PLANTED)
    argv, env = module_command("oomscope.record.main", ["not json"], safe_path_flag=safe_path_flag)
    r = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "planted" not in r.stderr
    # the real record/main.py answered: its one-line refusal of options that are not JSON
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "oomscope: error: oomscope.record.main takes the options of `oomscope record` as one JSON object; "
        "run `oomscope record` instead"]


def test_bad_options_to_the_recorders_own_entry_point_are_one_line():
    from oomscope.record.main import main

    assert main(["[1, 2]"]) == 2
    assert main([]) == 2
    assert main(['{"output": "x"}']) == 2  # not every option of record


def test_an_empty_or_relative_pythonpath_entry_does_not_bring_the_working_folder_back(tmp_path, monkeypatch):
    (tmp_path / "oomscope").mkdir()
    (tmp_path / "oomscope" / "__init__.py").write_text(PLANTED)
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-oomscope-test:.::")
    argv, env = module_command("oomscope.record.main", ["not json"])
    assert env["PYTHONPATH"].split(":")[1:] == ["/nonexistent-oomscope-test"]
    r = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "planted" not in r.stderr and r.returncode == 2, r.stderr
