"""`edge-guard calibrate --ks` and `--extend`: thresholds for several K, each as `--k K` alone
would give it, the bundle's own K untouched."""

import json

import pytest

torch = pytest.importorskip("torch")

from edge_guard.bundle import load_bundle  # noqa: E402
from edge_guard.calibration.k_thresholds import default_ks, parse_ks  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import save_checkpoint  # noqa: E402
from edge_guard.errors import UserError  # noqa: E402
from cli_run import run_cli  # noqa: E402

FRAME, PATCH, CALIB, HOLDOUT = (64, 128), 48, 10, 2


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("calibrate_ks")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    write_split(root / "scenes", split="val", frames=CALIB + HOLDOUT, size=FRAME, seed=5, progress=False)
    return {"root": root, "ckpt": ckpt, "data": root / "scenes"}


def _calibrate(ws, out, *extra):
    rc, stdout, stderr = run_cli(["calibrate", "--model", ws["ckpt"], "--data", ws["data"], "--out", out,
                                  "--frame", f"{FRAME[0]}x{FRAME[1]}", "--patch", PATCH, "--fpr", "0.1",
                                  "--calib-frames", CALIB, "--holdout-frames", HOLDOUT, "--seed", "3",
                                  "--conditions", "dark0.25", "--quiet", *extra])
    assert rc == 0, stderr
    return load_bundle(out), stdout


@pytest.fixture(scope="module")
def several(workspace):
    """K = 3 with thresholds for 1, 2, 3 and 5."""
    return _calibrate(workspace, workspace["root"] / "several", "--k", "3", "--ks", "1,2,5")


@pytest.fixture(scope="module")
def alone(workspace):
    """K = 3 alone, as before --ks."""
    return _calibrate(workspace, workspace["root"] / "alone", "--k", "3", "--ks", "none")


def test_the_ladder_and_its_parsing():
    assert default_ks(5) == (1, 2, 3, 5, 8) and default_ks(1) == (1, 2) and default_ks(4) == (1, 2, 3, 4, 5, 8)
    assert parse_ks(" 8,1,3,3 ") == (1, 3, 8)
    for bad in ("", "1,,2", "0", "1.5", "x", "1025"):
        with pytest.raises(UserError, match="comma-separated integers"):
            parse_ks(bad)


def test_every_k_gets_the_threshold_it_gets_alone(workspace, several, alone):
    bundle, stdout = several
    table = bundle.detector["thresholds_by_k"]
    assert list(table) == ["1", "2", "3", "5"] and bundle.k == 3
    # The bundle's own K: the same threshold, rule and evaluation as without the others.
    assert bundle.threshold == alone[0].threshold == table["3"]
    assert bundle.detector["threshold_rule"] == alone[0].detector["threshold_rule"]
    assert bundle.doc["provenance"]["evaluation"] == alone[0].doc["provenance"]["evaluation"]
    assert "thresholds_by_k" not in alone[0].detector and "thresholds_by_k" not in alone[0].doc["provenance"]
    # Another K: what a calibration with only that K chooses.
    other, _ = _calibrate(workspace, workspace["root"] / "five", "--k", "5", "--ks", "none")
    assert table["5"] == other.threshold
    rec = bundle.doc["provenance"]["thresholds_by_k"]
    assert rec["ks"] == [1, 2, 3, 5] and rec["rule"] == "fpr" and rec["conditions"] == ["dark0.25"]
    assert "same SeedSequence" in rec["method"]
    for k, t in table.items():
        entry = rec["by_k"][k]
        assert entry["threshold"] == t == min([entry["clean_threshold"]] + list(entry["conditions"].values()))
        assert 0 <= entry["calibration_fpr"] <= 0.1 and 0 <= entry["holdout_fpr"] <= 1
    assert rec["by_k"]["5"]["conditions"] == {c: v["threshold"] for c, v in
                                              other.detector["threshold_rule"]["conditions"].items()}
    assert "thresholds for 4 K" in stdout and "K=3    threshold" in stdout and "(the bundle's K)" in stdout


def test_extend_adds_the_same_thresholds_to_a_calibrated_bundle(workspace, several, alone):
    out = alone[0].root
    before = json.loads((out / "guard.json").read_text())
    rc, stdout, stderr = run_cli(["calibrate", "--out", out, "--extend", "--ks", "1,2,5", "--model", workspace["ckpt"],
                                  "--quiet"])
    assert rc == 0, stderr
    bundle = load_bundle(out)
    assert bundle.detector["thresholds_by_k"] == several[0].detector["thresholds_by_k"]
    assert bundle.threshold == before["detector"]["threshold"]            # not changed
    for key in ("model", "frame", "schema_version"):
        assert bundle.doc[key] == before[key]
    assert bundle.doc["provenance"]["calibration"] == before["provenance"]["calibration"]
    rec = bundle.doc["provenance"]["thresholds_by_k"]
    assert rec["extended"][0]["added_ks"] == [1, 2, 5] and rec["extended"][0]["verified_k"] == 3
    assert "reproduced its recorded thresholds" in rec["method"]
    assert "K=3 keeps threshold" in stdout
    # Nothing more to add: said, and guard.json left as it is.
    rc, stdout, _ = run_cli(["calibrate", "--out", out, "--extend", "--ks", "2", "--model", workspace["ckpt"]])
    assert rc == 0 and "nothing to add" in stdout


def test_extend_refuses_what_it_cannot_reproduce(workspace, several, tmp_path):
    import shutil

    out = tmp_path / "tampered"
    shutil.copytree(several[0].root, out)
    doc = json.loads((out / "guard.json").read_text())
    rule = doc["detector"]["threshold_rule"]
    rule["clean_threshold"] = rule["clean_threshold"] + 0.001     # no longer what its frames give
    (out / "guard.json").write_text(json.dumps(doc))
    before = (out / "guard.json").read_text()
    rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", "--ks", "8", "--model", workspace["ckpt"],
                             "--quiet"])
    assert rc == 2 and stderr.count("\n") == 1 and "rescoring the bundle's own K=3 gives clean threshold" in stderr
    assert (out / "guard.json").read_text() == before
    for extra, message in ((["--k", "4"], "leave out --k"), (["--seed", "1"], "leave out --seed")):
        rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", *extra])
        assert rc == 2 and message in stderr and stderr.count("\n") == 1
    rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", "--model", workspace["root"] / "scenes"
                             / "nothing.pt"])
    assert rc == 2 and "does not exist" in stderr
    rc, _, stderr = run_cli(["calibrate", "--out", tmp_path / "b"])
    assert rc == 2 and "--data DIR is required" in stderr and stderr.count("\n") == 1
