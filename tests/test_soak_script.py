"""benchmarks/soak_run.py (issue 27): `run` over a generated drive whose events disk fills
half way; tried here at a tiny size with the tiny bundle."""

import json

from benchmark_scripts import load_benchmark
from tiny_bundle import make_guard_bundle


def test_the_soak_run_checks_every_frame_and_loses_half_the_log_whole(tmp_path, capsys):
    script = load_benchmark("soak_run")
    bundle = make_guard_bundle(tmp_path / "bundle", frame=(48, 64), k=2)
    out = tmp_path / "soak.json"
    assert script.main(["--seconds", "2", "--size", "48x64", "--bundle", str(bundle), "--threads", "1",
                        "--codec", "FFV1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == result["frames_read"] == result["frames_checked"] == 30
    assert result["torn_lines"] == 0 and result["exit_status"] in (3, 4)
    # The disk fills about half way: about half the frame records are in the log.
    assert 10 <= result["frame_records_logged"] <= 20
    assert result["frames_lost_from_log"] == 30 - result["frame_records_logged"]
    assert result["records_lost_counted"] >= result["frames_lost_from_log"] + 1  # + the end record
    assert result["events_bytes"] <= result["limit_bytes"]
    assert result["rss_end_mb"] > 0 and len(result["warnings"]) == 1
    assert 0 <= result["frames_flagged"] <= 30 and (result["alarms"] > 0) == (result["exit_status"] == 4)
    assert "frames_lost_from_log" in capsys.readouterr().out
