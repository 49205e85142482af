"""`edge-guard demo`: end to end at 64x128 (tiny checkpoint, tiny bundle), the attack cache,
the replay of shipped frames without PyTorch, and the pieces (perturbation store, strip)."""

import json
import os
import re
import sys

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_guard.scenes import render_clip  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import save_checkpoint  # noqa: E402
from edge_guard.demo import default_attacked, parse_range  # noqa: E402
from edge_guard.demo_frames import FrameStore, decode_delta, encode_delta, frame_sha256  # noqa: E402
from edge_guard.demo_strip import pick_frames  # noqa: E402
from edge_guard.errors import UserError  # noqa: E402
from edge_guard.events import read_events  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from tiny_bundle import make_guard_bundle  # noqa: E402
from cli_run import run_cli  # noqa: E402
from blocked_imports import run_without  # noqa: E402

SIZE = (64, 128)
FRAMES, ATTACKED, ITERS, SEED = 12, (3, 5), 3, 7



@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    # The contrast bundle (analytic patch model, 4 classes): the demo's plumbing, not its numbers.
    bundle = make_guard_bundle(root / "bundle", patch=32, frame=SIZE, k=5, threshold=0.9)
    return {"root": root, "ckpt": ckpt, "bundle": bundle}


def _args(ws, out, *extra):
    return ["demo", "--out", str(out), "--bundle", str(ws["bundle"]), "--model", str(ws["ckpt"]),
            "--frames", str(FRAMES), "--attacked", f"{ATTACKED[0]}-{ATTACKED[1]}", "--iters", str(ITERS),
            "--seed", str(SEED), "--threads", "1", "--quiet", *extra]


def _table(stdout: str) -> dict:
    got = {}
    for key, label in (("benign", "benign frames (false alarms)"), ("attacked", "attacked frames (detections)")):
        m = re.search(re.escape(label) + r"\s+(\d+)/(\d+)", stdout)
        assert m, stdout
        got[key] = (int(m.group(1)), int(m.group(2)))
    assert re.search(r"achieved FPS\s+[\d.]+ frames/s", stdout), stdout
    assert re.search(r"latency p50 / p99\s+[\d.]+ / [\d.]+ ms", stdout), stdout
    return got


def _video_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def live(ws):
    out = ws["root"] / "live"
    rc, stdout, stderr = run_cli(_args(ws, out))
    assert rc == 0, stderr
    return out, stdout


def test_demo_end_to_end(live):
    out, stdout = live
    print(stdout)
    assert "attacked live here" in stdout and "mean pixel success" in stdout
    for name in ("events.jsonl", "checked.mp4", "strip.png", "clip.avi", "attack/manifest.json"):
        assert (out / name).is_file(), name
    for name in ("events.jsonl", "checked.mp4", "strip.png"):
        assert str(out / name) in stdout
    records = read_events(out / "events.jsonl")
    assert [r["type"] for r in records if r["type"] != "alarm"] == ["start"] + ["frame"] * FRAMES + ["end"]
    frames = [r for r in records if r["type"] == "frame"]
    assert [r["frame"] for r in frames] == list(range(FRAMES))
    a, b = ATTACKED
    benign = [r["adversarial"] for r in frames if not a <= r["frame"] <= b]
    attacked = [r["adversarial"] for r in frames if a <= r["frame"] <= b]
    table = _table(stdout)
    assert table["benign"] == (sum(benign), FRAMES - (b - a + 1))
    assert table["attacked"] == (sum(attacked), b - a + 1)
    end = records[-1]
    assert end["frames_checked"] == FRAMES and end["frames_flagged"] == sum(benign) + sum(attacked)
    assert len(_video_frames(out / "checked.mp4")) == FRAMES
    strip = cv2.imread(str(out / "strip.png"))
    # 7 thumbnails (frames 1-7) in two rows, the model's view of frame 4, the score plot.
    tile = round(SIZE[0] * 320 / SIZE[1]) + 44
    assert strip is not None and strip.shape[:2] == (3 * tile + 150, 4 * 320)
    # The clip on disk is lossless: clean frames are the rendering, attacked ones its perturbation.
    clip = render_clip(SEED, FRAMES, SIZE)
    video = _video_frames(out / "clip.avi")
    assert len(video) == FRAMES
    store = FrameStore.open(out / "attack")
    assert store.indices() == list(range(a, b + 1))
    for i, (image, _) in enumerate(clip):
        want = store.load(i, image)[0] if a <= i <= b else image
        np.testing.assert_array_equal(video[i], cv2.cvtColor(want, cv2.COLOR_RGB2BGR))
    assert any((store.load(i, clip[i][0])[0] != clip[i][0]).any() for i in range(a, b + 1))
    for i in range(a, b + 1):
        maps = store.label_maps(i)
        assert sorted(maps) == ["attacked", "clean", "target"]
        assert all(m.shape == SIZE and m.dtype == np.uint8 for m in maps.values())
        assert (maps["target"] < 19).all()
        rec = store.frames[str(i)]
        assert 0 <= rec["success"] <= 1 and rec["iterations"] <= ITERS and rec["linf"] <= ITERS + 1
        assert f"{rec['success']:9.1%}" in stdout


def test_second_run_takes_the_attack_from_the_cache(ws, live, monkeypatch):
    from edge_guard.calibration import demo_attack

    out, _ = live
    calls = []
    real = demo_attack.attack_frames
    monkeypatch.setattr(demo_attack, "attack_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    rc, stdout, stderr = run_cli(_args(ws, out))
    assert rc == 0, stderr
    assert not calls and "taken from the cache" in stdout and "attack time: none, every frame came from the cache" in stdout
    assert "attacked live here" not in stdout and "every attacked frame taken from the cache" in stdout
    rc, stdout, stderr = run_cli(_args(ws, out, "--no-attack-cache"))
    assert rc == 0, stderr
    assert calls == [1] and "taken from the cache" not in stdout
    rc, stdout, stderr = run_cli(_args(ws, out, "--target", "vanish"))  # other settings: a cache miss
    assert rc == 0, stderr
    assert calls == [1, 1] and "the same street, empty" in stdout
    assert FrameStore.open(out / "attack").settings["target"] == "vanish"


def test_a_missing_default_checkpoint_falls_back_to_the_shipped_frames(ws, shipped, tmp_path, monkeypatch):
    from edge_guard.demo import DemoOptions, run_demo

    opts = DemoOptions(out=tmp_path / "o", bundle=ws["bundle"], model=tmp_path / "absent.pt",
                       shipped_dir=shipped, threads=1, progress=False)
    result = run_demo(opts, say=lambda text: None)
    assert result.mode == "shipped" and "no model checkpoint" in result.reason
    assert result.attacked == ATTACKED and result.counts["attacked"] == ATTACKED[1] - ATTACKED[0] + 1
    rc, _, err = run_cli(_args(ws, tmp_path / "o2") + ["--model", str(tmp_path / "absent.pt")])
    assert rc == 2 and "does not exist" in err  # an explicit --model must exist


def test_demo_targets_empty_the_road():
    from edge_guard.scenes import render_frame
    from edge_guard.calibration.demo_attack import SOURCE_SEED_OFFSET, demo_target
    from edge_guard.calibration.targets import MOVABLE, remove_movable

    _, labels = render_frame(SEED, SIZE)
    assert np.isin(labels, MOVABLE).any()
    vanish = demo_target("vanish", labels, SEED)
    keep = ~np.isin(labels, MOVABLE)
    assert not np.isin(vanish, MOVABLE).any() and (vanish[keep] == labels[keep]).all()
    scene = demo_target("scene", labels, SEED)
    other = render_frame(SEED + SOURCE_SEED_OFFSET, SIZE)[1]
    np.testing.assert_array_equal(scene, remove_movable(other))
    assert not np.isin(scene, MOVABLE).any() and (scene != vanish).mean() > 0.05
    with pytest.raises(UserError):
        demo_target("pure", labels, SEED)


@pytest.fixture(scope="module")
def shipped(ws):
    from edge_guard.calibration.demo_attack import write_demo_frames

    folder = ws["root"] / "shipped"
    write_demo_frames(ws["ckpt"], ws["bundle"], folder, seed=SEED, frames=FRAMES, attacked=ATTACKED,
                      iters=ITERS, progress=False, threads=1)
    return folder


def test_the_shipped_attack_is_the_cache_of_its_own_settings(ws, shipped, tmp_path, monkeypatch):
    from edge_guard.calibration import demo_attack

    calls = []
    real = demo_attack.attack_frames
    monkeypatch.setattr(demo_attack, "attack_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "same"
    rc, stdout, stderr = run_cli(_args(ws, out, "--shipped-dir", str(shipped)))
    assert rc == 0, stderr
    assert not calls and "taken from the attack shipped for these settings" in stdout
    assert "attack time: none, every frame came from the cache" in stdout
    assert "attacked live here" not in stdout
    mine, theirs = FrameStore.open(out / "attack"), FrameStore.open(shipped)
    assert mine.indices() == theirs.indices() == list(range(ATTACKED[0], ATTACKED[1] + 1))
    for i in mine.indices():  # the very perturbations that were shipped
        assert (out / "attack" / mine.frames[str(i)]["file"]).read_bytes() == \
            (shipped / theirs.frames[str(i)]["file"]).read_bytes()
    rc, stdout, stderr = run_cli(_args(ws, tmp_path / "other", "--shipped-dir", str(shipped),
                                       "--target", "vanish"))  # other settings: attacked here
    assert rc == 0, stderr
    assert calls == [1] and "taken from the attack shipped" not in stdout
    rc, stdout, stderr = run_cli(_args(ws, tmp_path / "again", "--shipped-dir", str(shipped),
                                       "--no-attack-cache"))
    assert rc == 0, stderr
    assert calls == [1, 1] and "taken from the attack shipped" not in stdout


def test_shipped_frames_of_a_clip_rendered_otherwise_are_not_taken(shipped, tmp_path):
    from edge_guard.demo import _from_shipped, render

    theirs = FrameStore.open(shipped)
    settings = {k: v for k, v in theirs.settings.items() if k != "bundle_model_sha256"}
    clip = render(SEED, FRAMES, SIZE)
    first = ATTACKED[0]
    clip[first] = (clip[first][0] ^ 1, clip[first][1])  # as if drawn by another OpenCV
    todo = list(range(ATTACKED[0], ATTACKED[1] + 1))
    copied, differ = _from_shipped(FrameStore(tmp_path / "a", settings), shipped, clip, todo)
    assert differ == [first] and copied == todo[1:]
    assert _from_shipped(FrameStore(tmp_path / "b", {**settings, "iters": 99}), shipped, clip, todo) == ([], [])


CLI_WITHOUT_TORCH = """
    import sys
    from edge_guard.cli import main
    rc = main(sys.argv[1:])
    assert "torch" not in sys.modules
    sys.exit(rc)
"""


def test_without_torch_the_shipped_frames_are_replayed(ws, shipped, tmp_path):
    out = tmp_path / "out"
    proc = run_without(["torch"], CLI_WITHOUT_TORCH, timeout=120,
                       args=["demo", "--out", out, "--bundle", ws["bundle"], "--shipped-dir", shipped,
                             "--threads", "1", "--quiet"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stdout = proc.stdout
    print(stdout)
    assert "replayed from the frames shipped with the package" in stdout
    assert "PyTorch is not installed" in stdout
    table = _table(stdout)
    a, b = ATTACKED
    assert table["attacked"][1] == b - a + 1 and table["benign"][1] == FRAMES - (b - a + 1)
    assert not (out / "attack").exists()
    # The attacked frames in the clip are the shipped perturbations on the re-rendered drive.
    video = _video_frames(out / "clip.avi")
    store = FrameStore.open(shipped)
    clip = render_clip(SEED, FRAMES, SIZE)
    for i in range(a, b + 1):
        adv, rec = store.load(i, clip[i][0])
        assert rec["clean_match"]
        np.testing.assert_array_equal(video[i], cv2.cvtColor(adv, cv2.COLOR_RGB2BGR))
    assert store.settings["bundle_model_sha256"] and "render differently" not in stdout


CLI_TORCH_UNUSED = """
    import sys
    from edge_guard.cli import main
    rc = main(sys.argv[1:])
    print("torch imported:", "torch" in sys.modules)
    sys.exit(rc)
"""


def _broken_torch(folder):
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text("raise ImportError('libtorch_cpu.so: cannot open shared object file')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}


def test_torch_is_imported_only_when_a_frame_must_be_attacked(ws, shipped, tmp_path):
    base = _args(ws, tmp_path / "a", "--shipped-dir", shipped)
    proc = run_without([], CLI_TORCH_UNUSED, timeout=120, args=base)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout and "every attacked frame taken from the cache" in proc.stdout

    # a torch that is found but fails to import: fine while nothing is to be attacked ...
    env = _broken_torch(tmp_path / "site")
    proc = run_without([], CLI_TORCH_UNUSED, timeout=120, env=env,
                       args=_args(ws, tmp_path / "b", "--shipped-dir", shipped))
    assert proc.returncode == 0, proc.stderr
    # ... and one line saying what to do when a frame is
    proc = run_without([], CLI_TORCH_UNUSED, timeout=120, env=env,
                       args=_args(ws, tmp_path / "c", "--shipped-dir", shipped, "--target", "vanish"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "PyTorch is installed but cannot be imported (libtorch_cpu.so" in proc.stderr
    assert "--shipped-attacks" in proc.stderr


def test_shipped_frames_are_of_one_clip(ws, shipped, tmp_path):
    base = ["demo", "--out", str(tmp_path / "o"), "--bundle", str(ws["bundle"]), "--shipped-dir",
            str(shipped), "--shipped-attacks", "--quiet"]
    rc, _, err = run_cli(base + ["--seed", "3"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--seed 3" in err
    rc, _, err = run_cli(base + ["--attacked", "1-2"])
    assert rc == 2 and "--attacked 1-2" in err
    rc, _, err = run_cli(base + ["--target", "vanish"])
    assert rc == 2 and "--target vanish" in err
    rc, stdout, err = run_cli(base + ["--seed", str(SEED), "--iters", "9"])
    assert rc == 0, err
    assert "--iters 9 is ignored" in stdout


def test_user_mistakes_are_one_line(ws, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    rc, _, err = run_cli(["demo", "--out", str(tmp_path / "o"), "--bundle", str(ws["bundle"]),
                       "--shipped-dir", str(empty), "--shipped-attacks", "--quiet"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no shipped adversarial frames" in err
    rc, _, err = run_cli(_args(ws, tmp_path / "o2", "--attacked", "10-14"))
    assert rc == 2 and "outside the clip" in err
    rc, _, err = run_cli(["demo", "--attacked", "5-2"])
    assert rc == 2 and "not a frame range" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(_args(ws, tmp_path / "file"))
    assert rc == 2 and "is not a folder" in err


# ---------------------------------------------------------------- the pieces

def test_perturbations_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    adv = np.clip(clean.astype(int) + rng.integers(-127, 128, clean.shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(decode_delta(clean, encode_delta(clean, adv)), adv)
    with pytest.raises(ValueError):
        encode_delta(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8))
    settings = {"seed": 1, "size": [16, 24]}
    store = FrameStore(tmp_path, settings)
    store.save(4, clean, adv, {"success": 0.5})
    again = FrameStore(tmp_path, settings)
    got, rec = again.load(4, clean)
    np.testing.assert_array_equal(got, adv)
    assert rec["clean_match"] and rec["success"] == 0.5 and rec["clean_sha256"] == frame_sha256(clean)
    assert not again.load(4, clean[::-1].copy())[1]["clean_match"]
    assert not FrameStore(tmp_path, {**settings, "seed": 2}).has(4)  # other settings: a cache miss
    labels = rng.integers(0, 19, (16, 24), dtype=np.uint8)
    store.save(5, clean, adv, {}, {"target": labels})
    np.testing.assert_array_equal(FrameStore.open(tmp_path).label_maps(5)["target"], labels)
    assert FrameStore.open(tmp_path).label_maps(4) == {}
    with pytest.raises(ValueError):
        store.save(6, clean, adv, {}, {"logits": labels})


def test_ranges_and_strip_choice():
    assert parse_range("16-21") == (16, 21) and parse_range("3") == (3, 3)
    for bad in ("a-b", "5-2", "-1", "1-2-3", ""):
        with pytest.raises(UserError):
            parse_range(bad)
    assert default_attacked(40) == (17, 22) and default_attacked(2) == (0, 0)
    for n in (1, 3, 12, 40, 100):
        a, b = default_attacked(n)
        assert 0 <= a <= b < n
    assert pick_frames(40, (17, 22)) == [15, 16, 17, 19, 20, 22, 23, 24]
    chosen = pick_frames(40, (10, 30))
    assert len(chosen) <= 8 and chosen[:2] == [8, 9] and chosen[-2:] == [31, 32] and 10 in chosen and 30 in chosen


def test_the_shipped_demo_catches_its_attack_with_the_default_detector(tmp_path):
    """The README's first command: the shipped bundle's default detector on the shipped attack
    (DAG toward an empty street, replayed) flags every attacked frame and raises the alarm
    inside the attacked stretch. The patches come from OS entropy, so this is a new draw on
    every run: attacked frames scored 0.09-0.20 over 10 runs, benign 0.40-0.85, the threshold
    is 0.33. The replay is the runtime's own path: it runs here with PyTorch and the offline
    packages (calibration, export) unimportable."""
    proc = run_without(["torch", "edge_guard.calibration", "edge_guard.export"], """
        import json, sys
        from edge_guard.bundle import load_bundle
        from edge_guard.demo import DemoOptions, run_demo
        from edge_guard.events import read_events
        from edge_guard.paths import DEFAULT_BUNDLE

        result = run_demo(DemoOptions(out=sys.argv[1], shipped=True, progress=False), say=lambda *a: None)
        alarms = [r["frame"] for r in read_events(result.paths["events"])
                  if r["type"] == "alarm" and r["state"] == "raised"]
        offline = sorted(m for m in sys.modules if m.startswith(("torch", "edge_guard.calibration",
                                                                 "edge_guard.export")))
        print(json.dumps(dict(mode=result.mode, method=load_bundle(DEFAULT_BUNDLE).method,
                              attacked=result.attacked, counts=result.counts, alarms=alarms,
                              offline=offline)))
    """, args=[tmp_path / "demo"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mode"] == "shipped" and out["method"] == "frame" and out["offline"] == []
    a, b = out["attacked"]
    assert out["counts"]["attacked_flagged"] == out["counts"]["attacked"] == b - a + 1
    assert out["counts"]["benign_flagged"] <= 2
    assert out["alarms"] and all(a <= frame <= b + 2 for frame in out["alarms"])
