"""benchmarks/adv_lib_crosscheck.py's core on a tiny model for 2 steps (issue 23): adv_lib's
dag and alma_prox load without torchvision or visdom, and every method gives its figures."""

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("adv_lib")

from attack_models import eight_bit, prototype_segmenter
from benchmark_scripts import load_benchmark


def test_crosscheck_core_two_steps():
    script = load_benchmark("adv_lib_crosscheck")
    adv = script.load_adv_lib()
    assert callable(adv["dag"]) and callable(adv["alma_prox"])
    # the placeholder logger is gone once the two files are loaded
    assert not adv["visdom_placeholder"] or "adv_lib.utils.visdom_logger" not in sys.modules
    model = prototype_segmenter(num_classes=5)
    x = eight_bit((1, 3, 8, 16), seed=1)
    target = torch.full((1, 8, 16), 2, dtype=torch.int64)
    target[:, :, :2] = 255  # ignored pixels count nowhere
    out = script.attack_frame(model, x, target, seed=0, adv=adv, max_iter=2, alma_steps=2)
    assert set(out) == set(script.METHODS)
    assert out["ours-8bit"]["is_8bit"] and out["ours-8bit"]["iterations"] <= 2
    assert out["adv_lib-dag"]["iterations"] <= 2 and out["alma-prox"]["iterations"] == 2
    for method in ("adv_lib-dag", "alma-prox"):
        for where in ("returned", "rounded"):
            fig = out[method][where]
            assert 0 <= fig["success"] <= 1 and fig["l2"] <= fig["linf"] + 1e-12
        assert out[method]["rounded"]["is_8bit"]
    records = [{"name": "f", "target_class": 2, "clean_success": 0.0, "methods": out}]
    rows = script.summarize(records, 0.99)
    assert [r["row"] for r in rows] == [label for label, _, _ in script.ROWS]
    assert "| f | 2 |" in script.frame_table(records) and "ours DAG" in script.table(rows, 0.99)


def test_our_dag_steps_as_adv_lib_dag():
    """Our float DAG and adv_lib's dag take the same steps (the same rule, loss and active
    pixels): after 3 steps their images differ by float rounding only. Images kept off the
    box's bounds, where ours projects and adv_lib only clamps its forward input."""
    from edge_guard.calibration.attacks import dag

    script = load_benchmark("adv_lib_crosscheck")
    adv = script.load_adv_lib()
    model = prototype_segmenter(num_classes=5)
    x = 0.1 + 0.8 * eight_bit((1, 3, 8, 16), seed=2)
    target = torch.full((1, 8, 16), 3, dtype=torch.int64)
    ours = dag(model, x, target, max_iter=3, threshold=1.0).images
    probe = script.Probe(model)  # adv_lib's 4th forward sees its iterate after 3 steps
    adv["dag"](probe, x, target, masks=target != 255, targeted=True, adv_threshold=1.0, max_iter=4,
               γ=0.5 / 255)
    assert probe.calls == 4
    assert (ours - probe.last).abs().max() < 1e-6
    assert (ours - x).abs().max() > 1 / 255  # it did move
