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
    assert cap.schema_version == 1 and SCHEMA_VERSION == 7
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
    assert data["victim"]["source"] == "bpf" and data["schema_version"] == 7
    assert f"{cap.victim.source}" == "bpf"
    data["victim"]["source"] = "rumour"
    with pytest.raises(CaptureError, match="capture.victim.source: unknown value 'rumour'"):
        Capture.from_dict(data)


def test_a_capture_with_charge_trackings_reconstruction_still_loads_and_renders(tmp_path):
    # charge tracking was removed in schema 5; captures written before keep their "reconstructed"
    # state and are shown with its source named for what it was
    import json

    from typer.testing import CliRunner

    from oomscope.cli import app
    from oomscope.model import Capture, Source

    from ..conftest import fixture_text

    text = fixture_text("captures", "schema3-v1-6.18-reconstructed.json")
    cap = Capture.from_json(text)
    assert cap.schema_version == 3 and cap.kernel_snapshot_status == ""
    rec = cap.at_kill_sources["reconstructed"]
    assert rec.source is Source.RECONSTRUCTED and rec.memory_stat["total_rss"] > 0
    assert "charge_tracking" not in json.loads(cap.to_json())  # read, not written again
    # a report-less kill of then: its state at the kill was the reconstruction
    data = json.loads(text)
    data["at_kill"]["source"] = "reconstructed"
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(data))
    r = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "pm.html")])
    assert r.exit_code == 0, r.output
    assert "in-kernel charge counters up to it (charge tracking, an approximation written by oomscope before schema 5)" \
        in (tmp_path / "pm.html").read_text()
