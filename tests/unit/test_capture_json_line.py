"""Capture.to_json(None) by json's C encoder made once (model._one_line_encoder, issue 29, eighth
pass): the text json.dumps gives with the same arguments, for every capture fixture and every kill of
the log fixtures; without a C encoder (None), json.dumps itself, the same text."""

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


def test_the_encoder_made_once_gives_json_dumps_text(tmp_path):
    assert model._ONE_LINE is not None  # CPython has the C encoder
    caps = _captures(tmp_path)
    assert len(caps) > 50
    for cap in caps:
        assert cap.to_json(None) == _dumps(cap)


def test_without_the_c_encoder_json_dumps_is_called(tmp_path, monkeypatch):
    caps = _captures(tmp_path)[:20]
    made = [cap.to_json(None) for cap in caps]
    monkeypatch.setattr(model, "_ONE_LINE", None)
    assert [cap.to_json(None) for cap in caps] == made


def test_a_cycle_still_fails():
    cap = Capture.from_json(fixture_text("captures", sorted(os.listdir(os.path.join(FIXTURES, "captures")))[0]))
    cap.notes.append(cap.notes)  # type: ignore[arg-type]
    with pytest.raises((RecursionError, ValueError)):
        cap.to_json(None)
