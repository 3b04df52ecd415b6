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
