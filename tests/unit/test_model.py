import json

import pytest

from oomscope.errors import CaptureError
from oomscope.model import Capture

from .helpers import capture_from_fixture


def test_round_trip():
    cap, _ = capture_from_fixture("v1-6.18-hostile-sidecar.kmsg")
    again = Capture.from_json(cap.to_json())
    assert again == cap
    assert again.to_json() == cap.to_json()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"schema_version": 99}', "unsupported capture schema_version 99"),
    ('{"schema_version": 1}', "missing required field 'kill_id'"),
])
def test_bad_captures(text, message):
    with pytest.raises(CaptureError, match=message):
        Capture.from_json(text)


def test_wrong_type_names_the_field():
    cap, _ = capture_from_fixture("v1-6.18-anon.kmsg")
    data = json.loads(cap.to_json())
    data["at_kill"]["usage_bytes"] = "lots"
    with pytest.raises(CaptureError, match=r"capture\.at_kill\.usage_bytes: expected an integer"):
        Capture.from_dict(data)


def test_a_capture_of_schema_1_still_loads():
    # written by oomscope 0.1.0 before the schema went to 2 (tests/fixtures/README.md)
    from oomscope.model import SCHEMA_VERSION, Capture, Source

    from ..conftest import fixture_text

    cap = Capture.from_json(fixture_text("captures", "schema1-v2-6.1-anon.json"))
    assert cap.schema_version == 1 and SCHEMA_VERSION == 4
    assert cap.host.page_size_bytes is None  # unknown in schema 1
    assert cap.at_kill.source is Source.KERNEL_REPORT and cap.victim.source is Source.BPF
    again = Capture.from_json(cap.to_json())
    assert again == cap


def test_provenance_is_a_source_written_as_its_plain_name():
    import json

    import pytest

    from oomscope.errors import CaptureError
    from oomscope.model import Capture, Source, Victim

    cap = Capture(kill_id="k", victim=Victim(pid=1, source=Source.BPF))
    data = json.loads(cap.to_json())
    assert data["victim"]["source"] == "bpf" and data["schema_version"] == 4
    assert f"{cap.victim.source}" == "bpf"
    data["victim"]["source"] = "rumour"
    with pytest.raises(CaptureError, match="capture.victim.source: unknown value 'rumour'"):
        Capture.from_dict(data)
