"""Capture.to_json(None, fast=True), one line (import's): by orjson (model._fast_dumps, issue 29, tenth pass), the value
json.dumps gives with the same arguments, for every capture fixture and every kill of the log
fixtures; where orjson refuses a value (an int beyond 64 bits, a lone surrogate) or is missing, json's
C encoder made once (model._one_line_encoder, eighth pass), json.dumps's very text; without a C
encoder, json.dumps itself. Without fast (record's), json's way always."""

import json
import os

import pytest

from oomscope import model
from oomscope.importer.kills import KillReader
from oomscope.importer.sources import map_log
from oomscope.model import Capture

from ..conftest import FIXTURES, fixture_text
from .test_import_regions import _logs


def _dumps(cap: Capture) -> str:
    return json.dumps(cap, default=model._json_fields, sort_keys=False, ensure_ascii=False) + "\n"


def _captures(tmp_path):
    caps = [Capture.from_json(fixture_text("captures", n)) for n in sorted(os.listdir(os.path.join(FIXTURES, "captures")))]
    for i, (_, text) in enumerate(sorted(_logs().items())):
        path = tmp_path / f"log{i}"
        path.write_text(text)
        mapped = map_log(str(path))
        try:
            reader = KillReader(not_after=0.0)
            caps += [imp.capture for imp in list(reader.read_regions(mapped.texts())) + list(reader.end())]
        finally:
            mapped.close()
    return caps


def test_orjson_gives_json_dumps_value(tmp_path):
    assert model._fast_dumps() is not None  # orjson is a dependency (pyproject.toml)
    caps = _captures(tmp_path)
    assert len(caps) > 50
    for cap in caps:
        text = cap.to_json(None, fast=True)
        assert cap.to_json(None) == _dumps(cap)  # record's way: json's
        assert text.endswith("\n") and "\n" not in text[:-1]
        assert text != _dumps(cap)  # orjson's own text (no spaces), not json's: this test sees which one ran
        assert json.loads(text) == json.loads(_dumps(cap))
        assert Capture.from_json(text) == Capture.from_json(_dumps(cap))


def test_what_orjson_refuses_takes_jsons_way(tmp_path):
    """An int beyond 64 bits (a hostile log's number below model.ABSURD) and a string with a lone
    surrogate: orjson raises, the capture is still written, json's very text."""
    cap = _captures(tmp_path)[0]
    cap.at_kill.memory_stat["anon"] = 1 << 70
    assert cap.to_json(None, fast=True) == _dumps(cap)
    cap.notes.append("bad \udcff byte")
    assert cap.to_json(None, fast=True) == _dumps(cap)


def test_the_encoder_made_once_gives_json_dumps_text(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "_fast_dumps", lambda: None)  # orjson missing
    assert model._ONE_LINE is not None  # CPython has the C encoder
    caps = _captures(tmp_path)
    assert len(caps) > 50
    for cap in caps:
        assert cap.to_json(None) == _dumps(cap)


def test_without_the_c_encoder_json_dumps_is_called(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "_fast_dumps", lambda: None)
    caps = _captures(tmp_path)[:20]
    made = [cap.to_json(None) for cap in caps]
    monkeypatch.setattr(model, "_ONE_LINE", None)
    assert [cap.to_json(None) for cap in caps] == made


def test_a_cycle_still_fails():
    cap = Capture.from_json(fixture_text("captures", sorted(os.listdir(os.path.join(FIXTURES, "captures")))[0]))
    cap.notes.append(cap.notes)  # type: ignore[arg-type]
    with pytest.raises((RecursionError, ValueError)):
        cap.to_json(None)
    with pytest.raises((RecursionError, ValueError)):  # orjson refuses it, json's way raises
        cap.to_json(None, fast=True)
