"""`edge-guard run --show` where no window can open: one line, status 2, before the model loads."""

import sys

import pytest

from cli_run import run_cli
from edge_guard import display as display_mod
from edge_guard.errors import UserError
from stream_clip import write_clip

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is X11/Wayland")


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.setattr(display_mod, "_window_ok", set())


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v") / "clip.avi")


def _refused(video, tmp_path) -> str:
    # A bundle that does not exist: the window must be refused before it is looked for.
    rc, out, err = run_cli(["run", "--source", video, "--bundle", tmp_path / "missing", "--show"])
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("edge-guard run: error: --show") and "--save VIDEO" in line
    return line


@linux
def test_a_display_that_does_not_answer_is_refused(video, tmp_path, monkeypatch):
    """A real probe: on this display no window opens (Qt would abort the process, GTK
    raise, a headless build refuse), and the run stops before any work."""
    monkeypatch.setenv("DISPLAY", ":4242")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    line = _refused(video, tmp_path)
    assert "window" in line


@linux
def test_an_opencv_without_windows_is_refused_without_a_probe(video, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(display_mod.cv2, "getBuildInformation", lambda: "  Video I/O:\n  GUI:    NONE\n")
    monkeypatch.setattr(display_mod, "_probe_window", lambda: pytest.fail("probed a headless build"))
    assert "built without windows" in _refused(video, tmp_path)


@linux
def test_a_window_that_opens_is_probed_once(monkeypatch):
    probes = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(display_mod, "_probe_window", lambda: probes.append(1))
    display_mod.check_display()
    display_mod.check_display()
    assert probes == [1]
    monkeypatch.setenv("DISPLAY", ":1")  # another display: probed again
    display_mod.check_display()
    assert probes == [1, 1]


@linux
def test_the_python_display_sink_checks_too(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="--show needs a display"):
        display_mod.Display(16, show=True)
