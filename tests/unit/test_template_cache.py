"""The templates' compiled code kept in the package's __pycache__ (report/template_cache.py): a
page rendered from it is the page compiled afresh; it is read only from files and folders of this
user (or root) that nobody else can write, never through a link; a changed template, other
environment options or jinja2's version are compiled again; nothing is written under
PYTHONDONTWRITEBYTECODE, and a folder that cannot be written is no error."""

import os
import sys

import jinja2
import pytest

from oomscope.importer.kills import import_reports
from oomscope.report import render
from oomscope.report.template_cache import PackageBytecodeCache

from ..conftest import fixture_text


@pytest.fixture
def compiled(monkeypatch):
    """Counts the templates jinja2 compiles from source."""
    calls = []
    real = jinja2.Environment._compile

    def counted(self, source, filename):
        calls.append(filename)
        return real(self, source, filename)

    monkeypatch.setattr(jinja2.Environment, "_compile", counted)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    return calls


def _env(folder, **options):
    env = render._env.__wrapped__() if not options else jinja2.Environment(loader=jinja2.PackageLoader("oomscope.report", "templates"),
                                                                          **options)
    if options:
        env.globals.update(render._env().globals)
    env.bytecode_cache = PackageBytecodeCache(str(folder), env)
    return env


def _page(env) -> str:
    cap = import_reports(fixture_text("logs", "dmesg-v1-6.18.txt").splitlines())[0].capture
    return env.get_template("postmortem.html.j2").render(v=render.build_view(cap, None))


def test_a_page_from_the_cache_is_the_page_compiled(tmp_path, compiled):
    folder = tmp_path / "__pycache__"
    fresh = _page(_env(folder))
    assert len(compiled) == 1 and len(list(folder.iterdir())) == 1
    assert _page(_env(folder)) == fresh
    assert len(compiled) == 1  # loaded, not compiled
    # the page as render_html makes it with no cache at all
    env = render._env.__wrapped__()
    env.bytecode_cache = None
    assert _page(env) == fresh


@pytest.mark.parametrize("spoil", ["group-writable file", "other-writable folder", "link", "other owner", "parent writable"])
def test_a_cache_file_others_could_write_is_not_loaded(tmp_path, compiled, spoil):
    folder = tmp_path / "__pycache__"
    _page(_env(folder))
    (entry,) = folder.iterdir()
    if spoil == "group-writable file":
        entry.chmod(0o664)
    elif spoil == "other-writable folder":
        folder.chmod(0o757)
    elif spoil == "link":
        target = tmp_path / "elsewhere"
        entry.rename(target)
        entry.symlink_to(target)
    elif spoil == "other owner":
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        os.chown(entry, 65534, 65534)
    else:
        tmp_path.chmod(0o777)
    sys.dont_write_bytecode = True  # (the compiled page is not written back over the spoiled file)
    _page(_env(folder))
    assert len(compiled) == 2  # compiled again, not loaded


def test_a_changed_template_or_other_options_are_compiled_again(tmp_path, compiled):
    folder = tmp_path / "__pycache__"
    sources = {"t.j2": "{% if x %}\n{{ x }}\n{% endif %}\n"}

    def env(**options):
        e = jinja2.Environment(loader=jinja2.DictLoader(sources), **options)
        e.bytecode_cache = PackageBytecodeCache(str(folder), e)
        return e

    assert env(trim_blocks=True).get_template("t.j2").render(x=1) == "1\n"
    assert env(trim_blocks=True).get_template("t.j2").render(x=1) == "1\n" and len(compiled) == 1
    assert env().get_template("t.j2").render(x=1) == "\n1\n"  # another option: another key (not trim_blocks' code)
    assert len(compiled) == 2
    sources["t.j2"] = "changed {{ x }}"
    assert env(trim_blocks=True).get_template("t.j2").render(x=1) == "changed 1"
    assert len(compiled) == 3


def test_nothing_is_written_under_dont_write_bytecode_nor_where_it_cannot_be(tmp_path, compiled, monkeypatch):
    folder = tmp_path / "__pycache__"
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    page = _page(_env(folder))
    assert not folder.exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anyway: a folder that is a file stands for a read-only one
            (ro / "__pycache__").parent.chmod(0o755)
            (ro / "__pycache__").write_text("not a folder")
        assert _page(_env(ro / "__pycache__")) == page
    finally:
        ro.chmod(0o755)
