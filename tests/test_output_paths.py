"""Issue 27, case 5 and the offline tools' smaller items: every output path is proved
writable (a probe file is created and removed) before the work, a missing export tool is
named before any model or data loads, and a failed export leaves no empty --out behind."""

import resource
import signal
import subprocess
import sys

import pytest

from blocked_imports import run_without
from cli_run import run_cli
from edge_guard.errors import UserError
from edge_guard.writable import check_file, check_folder

# /proc exists and is a folder, but nothing can be created in it, even by root (the tests
# run as root here, so permission bits would prove nothing).
NOPE = "/proc/nope"


def _one_line(argv, *words):
    rc, out, err = run_cli([str(a) for a in argv])
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return out


RUNTIME = [
    (["bench", "--json", f"{NOPE}/x.json", "--iters", "1", "--k", "1"], "cannot write --json"),
    (["run", "--source", "{tmp}/clip.mp4", "--events", f"{NOPE}/ev.jsonl"], "cannot write --events"),
    (["run", "--source", "{tmp}/clip.mp4", "--save", "/proc/sv.mp4"], "cannot write --save"),
    (["run", "--source", "{tmp}/clip.mp4", "--plot", "/proc/run.png"], "cannot write --plot"),
    (["check", "x.png", "--labels-out", f"{NOPE}/labels"], "cannot create --labels-out"),
    (["generate", "--out", f"{NOPE}/g", "--frames", "1"], "cannot create --out"),
]


@pytest.mark.parametrize("argv,words", RUNTIME, ids=[a[0] + " " + a[-2 if a[0] == "bench" else 3] for a, _ in RUNTIME])
def test_an_unwritable_output_is_refused_before_the_work(argv, words, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")  # a source that exists (it is never opened)
    out = _one_line([a.format(tmp=tmp_path) for a in argv], words, "/proc")
    assert out == ""  # nothing was timed, loaded or checked


OFFLINE = [
    (["calibrate", "--data", "{tmp}/no-data", "--out", f"{NOPE}/b"], "cannot create --out"),
    (["export", "--out", f"{NOPE}/b"], "cannot create --out"),
    (["evaluate", "--data", "{tmp}/no-data", "--out", f"{NOPE}/e", "--quick"], "cannot create --out"),
    (["attack", "--data", "{tmp}/no-data", "--method", "dag", "--target", "pure", "--out", f"{NOPE}/a"],
     "cannot create --out"),
    (["train", "--data", "{tmp}", "--out", f"{NOPE}/m.pt"], "cannot write --out"),
    (["demo", "--out", f"{NOPE}/d", "--shipped-attacks"], "cannot create --out"),
]


@pytest.mark.parametrize("argv,words", OFFLINE, ids=[a[0] for a, _ in OFFLINE])
def test_an_offline_tool_refuses_an_unwritable_out_before_loading_anything(argv, words, tmp_path):
    if argv[0] != "demo":
        pytest.importorskip("torch")
    # The data folder does not exist either: the --out error comes first, before the data.
    _one_line([a.format(tmp=tmp_path) for a in argv], words)


def test_the_probe_writes_a_byte_so_a_full_disk_is_found_before_the_work(tmp_path):
    """Creating a file can succeed where writing to it fails (a full disk, a size limit):
    under RLIMIT_FSIZE = 0 the probe's one byte is refused, and bench stops at once."""
    def no_bytes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    proc = subprocess.run([sys.executable, "-m", "edge_guard", "bench", "--json", str(tmp_path / "b.json"),
                           "--iters", "1", "--k", "1"], capture_output=True, text=True, timeout=120,
                          preexec_fn=no_bytes)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert "cannot write --json" in proc.stderr and "File too large" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # the probe is gone


def test_probes_leave_nothing_behind_and_existing_files_unchanged(tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text("previous results")
    check_file(kept, "--json")
    check_file(tmp_path / "new.json", "--json")
    check_file(tmp_path / "a" / "b" / "new.json", "--json")  # probed in tmp_path, created later
    check_folder(tmp_path / "out", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]
    assert kept.read_text() == "previous results"
    with pytest.raises(UserError, match="exists and is not a folder"):
        check_folder(kept, "--out")
    with pytest.raises(UserError, match="is a folder"):
        check_file(tmp_path, "--json")


def test_export_names_a_missing_onnxscript_before_loading_the_model(tmp_path):
    """torch.onnx's exporter needs onnxscript: the error names the extra, nothing is loaded
    (edge_guard.calibration, the model loader, is blocked too: reaching it would fail
    differently) and no --out is created."""
    pytest.importorskip("torch")
    for command in (["export"], ["calibrate", "--data", str(tmp_path / "scenes")]):
        out = tmp_path / command[0] / "bundle"
        proc = run_without(["onnxscript", "edge_guard.calibration"], """
            import sys
            from edge_guard.cli import main
            sys.exit(main(sys.argv[1:]))
        """, args=[*command, "--out", out], timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "onnxscript" in lines[0] and "pip install 'edge-guard[offline]'" in lines[0]
        assert not (tmp_path / command[0]).exists()


def test_a_failed_export_leaves_no_empty_out_behind(tmp_path):
    pytest.importorskip("torch")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    _one_line(["export", "--model", bad, "--out", tmp_path / "new" / "bundle"], "not a readable PyTorch checkpoint")
    assert not (tmp_path / "new").exists()
    # A folder that was there before stays, even empty.
    (tmp_path / "old").mkdir()
    _one_line(["export", "--model", bad, "--out", tmp_path / "old"], "not a readable PyTorch checkpoint")
    assert (tmp_path / "old").is_dir()
