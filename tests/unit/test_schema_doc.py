"""docs/capture-schema.md says the capture's model, type by type: each of its ``## `Type`...``
sections lists exactly that dataclass's fields (none missing, none that is not one), and every type a
capture holds has its section. Older captures load as schema 7 says them (issue 25)."""

import dataclasses
import json
import os
import re
import typing

from oomscope import model
from oomscope.capture.assemble import choose_at_kill
from oomscope.model import SCHEMA_VERSION, Capture
from oomscope.report.formats import render_markdown

from ..conftest import fixture_text

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "capture-schema.md")


def _types_of_capture():
    """Every dataclass a Capture holds, found through the type hints (not a list kept by hand)."""
    seen, todo = [], [model.Capture]
    while todo:
        tp = todo.pop()
        if tp in seen:
            continue
        seen.append(tp)
        for hint in typing.get_type_hints(tp).values():
            stack = [hint]
            while stack:
                h = stack.pop()
                if dataclasses.is_dataclass(h):
                    todo.append(h)
                stack.extend(typing.get_args(h))
    return {tp.__name__: tp for tp in seen}


def _documented():
    """{type name: the first column's field names of its table}."""
    sections, current = {}, None
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            head = re.match(r"^## `(\w+)`", line)
            if head:
                current = sections.setdefault(head.group(1), [])
            elif line.startswith("## "):
                current = None
            elif current is not None:
                row = re.match(r"^\| `(\w+)` \|", line)
                if row:
                    current.append(row.group(1))
    return sections


def test_every_type_of_a_capture_has_its_section_and_no_section_names_another():
    types, sections = _types_of_capture(), _documented()
    assert len(types) >= 25  # the walk found the model, not a part of it
    assert sorted(set(types) - set(sections)) == []
    assert sorted(set(sections) - set(types)) == []


def test_each_section_lists_exactly_its_dataclass_fields():
    types, sections = _types_of_capture(), _documented()
    for name, tp in types.items():
        fields = [f.name for f in dataclasses.fields(tp)]
        doc = sections[name]
        assert len(doc) == len(set(doc)), f"{name}: a field documented twice"
        assert sorted(set(fields) - set(doc)) == [], f"{name}: fields not documented"
        assert sorted(set(doc) - set(fields)) == [], f"{name}: documented, not a field"


def test_the_document_names_the_version_written():
    with open(DOC, encoding="utf-8") as f:
        first = f.readline()
    assert first.strip() == f"# capture.json, schema version {SCHEMA_VERSION}"


def test_a_schema_6_tasks_rss_fields_load_under_their_schema_7_names():
    cap = Capture.from_json(fixture_text("captures", "schema3-v1-6.18-reconstructed.json"))
    data = json.loads(fixture_text("captures", "schema3-v1-6.18-reconstructed.json"))
    old = {t["pid"]: t for t in data["tasks"]}
    assert any(t.get("rss_anon_bytes") for t in old.values())  # the fixture has figures to move
    for t in cap.tasks:
        assert (t.anon_rss_bytes, t.file_rss_bytes, t.shmem_rss_bytes) == (
            old[t.pid]["rss_anon_bytes"], old[t.pid]["rss_file_bytes"], old[t.pid]["rss_shmem_bytes"])
    # an old at_kill loads as a cgroup state as it is: its own figures, the fields it lacked unknown
    assert cap.at_kill.usage_bytes == data["at_kill"]["usage_bytes"] and cap.at_kill.cgroup is None
    # written again in 7's shape (keeping the version it was read as), it reads back the same
    again = Capture.from_json(cap.to_json())
    assert "rss_anon_bytes" not in cap.to_json() and again == cap
    assert render_markdown(again) == render_markdown(cap)


def test_at_kill_is_a_copy_of_the_best_source_not_the_same_object():
    st = model.CgroupState(source=model.Source.LAST_SAMPLE, usage_bytes=5, memory_stat={"anon": 5},
                           memory_events={"max": 1}, pressure={"some_avg10": 1.0}, cgroup="/a", age_ms=12.0)
    at = choose_at_kill({"last_sample": st})
    assert at == st and at.cgroup == "/a" and at.memory_events == {"max": 1}
    at.memory_stat["anon"] = 0
    at.memory_events["max"] = 9
    assert st.memory_stat == {"anon": 5} and st.memory_events == {"max": 1}
    assert choose_at_kill({}) == model.CgroupState() and model.CgroupState().source == "none"
