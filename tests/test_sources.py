"""edge_guard.sources: what --camera/--source name, and how they open."""

import pytest

from edge_guard.errors import UserError
from edge_guard.sources import Source, SourceError, has_gstreamer, open_capture, parse_source


def test_parse_source():
    assert parse_source(camera=0) == Source(0, "camera")
    assert parse_source(source="/dev/video2") == Source("/dev/video2", "camera")
    pipeline = "videotestsrc num-buffers=10 ! videoconvert ! appsink"
    assert parse_source(source=pipeline).kind == "gstreamer"
    url = parse_source(source="rtsp://10.0.0.5:554/stream")
    assert url.kind == "url" and url.live
    with pytest.raises(UserError, match="exactly one"):
        parse_source()
    if not has_gstreamer():
        with pytest.raises(SourceError, match="without GStreamer"):
            open_capture(parse_source(source=pipeline))


def test_source_folder_and_pattern(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        parse_source(source=str(tmp_path))
    odd = tmp_path / "clip!1.avi"  # a file name with '!' is a file, not a GStreamer pipeline
    odd.write_bytes(b"")
    assert parse_source(source=str(odd)) == Source(str(odd), "file")
    pattern = parse_source(source=str(tmp_path / "%06d.png"))
    assert pattern.kind == "file" and not pattern.live
