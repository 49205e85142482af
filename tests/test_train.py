"""Training lowers the loss, resumes, and evaluate-seg reports IoU; segeval metrics by hand."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_guard.calibration.data.folders import open_dataset
from edge_guard.calibration.data.layout import write_split
from edge_guard.calibration.models import build_segmenter
from edge_guard.calibration.models.checkpoint import load_segmenter
from edge_guard.calibration.models.segmenter import Segmenter
from edge_guard.calibration.segeval import confusion_matrix, iou_table
from edge_guard.calibration.train import TrainConfig, channel_stats, train
from edge_guard.cli import main


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_split(root, "train", frames=6, size=(64, 128), seed=3, progress=False)
    write_split(root, "val", frames=2, size=(64, 128), seed=3, progress=False)
    return root


def dataset_loss(segmenter, frames):
    segmenter.eval()
    with torch.no_grad():
        losses = []
        for image, labels, _ in frames:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            y = torch.from_numpy(labels.astype(np.int64))[None]
            losses.append(F.cross_entropy(segmenter(x), y, ignore_index=255).item())
    return float(np.mean(losses))


def test_training_lowers_the_loss_and_resumes(scenes, tmp_path):
    out = tmp_path / "tiny.pt"
    cfg = TrainConfig(data=str(scenes), out=str(out), steps=30, batch_size=4, crop=64, lr=1e-2,
                      workers=0, save_every=100, model_kwargs={"width": 16})
    frames = open_dataset(scenes, "train")
    torch.manual_seed(cfg.seed)
    mean, std = channel_stats(frames)
    initial = build_segmenter("edge_small", mean=mean, std=std, width=16)
    summary = train(cfg, progress=False, log=lambda *_: None)
    trained, meta = load_segmenter(out)
    assert summary["steps"] == 30 and meta["train"]["step"] == 30
    assert summary["steps_per_s_steady"] > 0  # timed over steps 15-30, after the warm-up
    assert meta["train"]["samples_seen"] == 120
    assert meta["model_kwargs"] == {"width": 16} and trained.mean == pytest.approx(mean)
    before, after = dataset_loss(initial, frames), dataset_loss(trained, frames)
    assert after < 0.8 * before, (before, after)

    # ENet weights by default: the checkpoint's logit bias takes their prior back out
    weights = torch.tensor(meta["train"]["config"]["weights"])
    assert trained.logit_bias == pytest.approx((-torch.log(weights)).tolist())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trained(x), trained.raw_logits(x) - torch.log(weights).view(1, -1, 1, 1))

    cfg.steps = 35
    resumed = train(cfg, resume=True, progress=False, log=lambda *_: None)
    assert resumed["steps"] == 35 and resumed["samples_seen"] == 140


def test_unweighted_training_writes_no_logit_bias(scenes, tmp_path):
    out = tmp_path / "plain.pt"
    train(TrainConfig(data=str(scenes), out=str(out), steps=2, batch_size=2, crop=48, workers=0,
                      class_weights="none", model_kwargs={"width": 16}), progress=False, log=lambda *_: None)
    seg, meta = load_segmenter(out)
    assert seg.logit_bias is None and meta["logit_bias"] is None


def test_logit_bias_recovers_the_class_frequencies_a_weighted_loss_distorts():
    # Labels of one pixel drawn with p = (0.6, 0.3, 0.1). Cross-entropy weighted by w drives
    # the raw softmax to w*p / sum(w*p), whose argmax is the rare class; the bias -log w must
    # bring the prediction back to p (and its argmax to the common class).
    p = torch.tensor([0.6, 0.3, 0.1])
    w = torch.tensor([0.2, 1.0, 8.0])
    z = torch.nn.Parameter(torch.zeros(1, 3, 1, 1))

    class Const(torch.nn.Module):
        def forward(self, x):
            return z.expand(x.shape[0], -1, x.shape[2], x.shape[3])

    seg = Segmenter(Const(), "const", 3, logit_bias=(-torch.log(w)).tolist())
    labels = torch.multinomial(p, 6000, replacement=True, generator=torch.Generator().manual_seed(0))
    labels = labels.view(1, 60, 100)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(600):
        loss = F.cross_entropy(seg.raw_logits(torch.zeros(1, 3, 60, 100)), labels, weight=w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    freq = torch.bincount(labels.view(-1), minlength=3).float() / labels.numel()
    with torch.no_grad():
        raw = torch.softmax(seg.raw_logits(torch.zeros(1, 3, 1, 1)).view(3), 0)
        fixed = torch.softmax(seg(torch.zeros(1, 3, 1, 1)).view(3), 0)
    assert raw.argmax() == 2
    assert torch.allclose(raw, w * freq / (w * freq).sum(), atol=2e-3)
    assert fixed.argmax() == 0 and torch.allclose(fixed, freq, atol=2e-3)


def test_evaluate_seg_cli(scenes, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    code = main(["train", "--data", str(scenes), "--out", str(ckpt), "--steps", "2", "--batch-size", "2",
                 "--crop", "64", "--width", "16", "--workers", "0"])
    assert code == 0 and ckpt.exists()
    report = tmp_path / "seg.json"
    assert main(["evaluate-seg", "--model", str(ckpt), "--data", str(scenes), "--json", str(report)]) == 0
    table = json.loads(report.read_text())
    assert table["frames"] == 2 and 0 <= table["miou"] <= 1 and len(table["iou"]) == 19
    assert "mIoU" in capsys.readouterr().out


def test_cli_user_errors_exit_2(tmp_path, capsys):
    assert main(["evaluate-seg", "--model", str(tmp_path / "missing.pt"), "--data", str(tmp_path)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["evaluate-seg", "--model", str(bogus), "--data", str(empty)]) == 2
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all("Traceback" not in line for line in err)
    assert err[-1].startswith("edge-guard train: error:")


def test_confusion_and_iou_by_hand():
    gt = np.array([[0, 0], [1, 255]], np.uint8)
    pred = np.array([[0, 1], [1, 1]], np.uint8)
    cm = confusion_matrix(pred, gt, 3)
    # valid pixels: (gt 0, pred 0), (gt 0, pred 1), (gt 1, pred 1); the void pixel is skipped.
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    table = iou_table(cm)
    # class 0: tp 1, union 2 + 1 - 1 = 2 -> 0.5; class 1: tp 1, union 1 + 2 - 1 = 2 -> 0.5;
    # class 2 absent from the ground truth -> not counted.
    assert table["iou"] == [0.5, 0.5, None]
    assert table["miou"] == pytest.approx(0.5)
    assert table["pixel_accuracy"] == pytest.approx(2 / 3)
    # A class predicted where the ground truth has none scores 0 (cityscapesScripts' rule):
    # ground truth all 0, half predicted 1 -> IoU_0 = 2/4, IoU_1 = 0/2 -> mIoU 0.25, not 0.5.
    half = iou_table(confusion_matrix(np.array([[0, 0, 1, 1]], np.uint8), np.zeros((1, 4), np.uint8), 3))
    assert half["iou"] == [0.5, 0.0, None] and half["miou"] == pytest.approx(0.25)
    assert half["miou_gt_classes"] == pytest.approx(0.5)


def test_init_starts_from_a_checkpoint_and_preload_gives_the_same_crops(scenes, tmp_path):
    base = tmp_path / "base.pt"
    cfg = TrainConfig(data=str(scenes), out=str(base), steps=4, batch_size=2, crop=48, workers=0,
                      save_every=100, model_kwargs={"width": 16})
    train(cfg, progress=False, log=lambda *_: None)
    start, _ = load_segmenter(base)

    runs = {}
    for preload in (False, True):
        out = tmp_path / f"ft_{preload}.pt"
        ft = TrainConfig(data=str(scenes), out=str(out), steps=3, batch_size=2, crop=48, lr=1e-3, workers=0,
                         save_every=100, init=str(base), preload=preload, model_kwargs={"width": 16})
        summary = train(ft, progress=False, log=lambda *_: None)
        runs[preload] = (summary, load_segmenter(out))
    (s0, (m0, meta0)), (s1, (m1, _)) = runs[False], runs[True]
    # a fresh schedule from the given weights, and the record says where they came from
    assert meta0["train"]["step"] == 3 and meta0["train"]["history"][-1]["init_sha256"]
    assert meta0["train"]["history"][-1]["init"] == str(base.resolve())
    assert meta0["train"]["history"][0]["to_step"] == 4  # the base run's stage comes first
    assert m0.mean == start.mean
    # decoding once into memory changes nothing about the crops the model sees
    assert s0["loss"] == pytest.approx(s1["loss"], rel=1e-5)
    for a, b in zip(m0.state_dict().values(), m1.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_a_run_resumed_mid_epoch_takes_the_crops_an_uninterrupted_run_takes(scenes, tmp_path):
    # 6 frames, batches of 2: 3 steps an epoch; stopping at step 2 leaves the epoch half done.
    def run(out, steps, resume=False):
        cfg = TrainConfig(data=str(scenes), out=str(out), steps=steps, batch_size=2, crop=48, workers=0,
                          save_every=100, model_kwargs={"width": 16})
        return train(cfg, resume=resume, progress=False, log=lambda *_: None)

    run(tmp_path / "straight.pt", 5)
    run(tmp_path / "resumed.pt", 2)
    run(tmp_path / "resumed.pt", 5, resume=True)
    a, _ = load_segmenter(tmp_path / "straight.pt")
    b, _ = load_segmenter(tmp_path / "resumed.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6), name


def test_init_from_official_weights_and_out_that_is_a_folder(scenes, tmp_path, capsys):
    # A bare state_dict (as the official DRN/DLA files), without BatchNorm's step counters
    # (they predate PyTorch 0.4.1): --init takes it with the run's --arch.
    net = build_segmenter("edge_small").net  # an official file has the architecture's default shape
    bare = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(bare, tmp_path / "official.pth")
    seg, meta = load_segmenter(tmp_path / "official.pth", arch="edge_small", mean=[0.5] * 3, std=[0.2] * 3)
    assert meta["format"] == "official"
    for k, v in bare.items():
        assert torch.equal(seg.net.state_dict()[k], v)
    out = tmp_path / "ft.pt"
    assert main(["train", "--data", str(scenes), "--out", str(out), "--steps", "1", "--batch-size", "2",
                 "--crop", "48", "--workers", "0", "--init", str(tmp_path / "official.pth")]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["train", "--data", str(scenes), "--out", str(tmp_path), "--steps", "1"]) == 2
    assert main(["train", "--data", str(scenes), "--out", str(out), "--workers", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is a folder" in err[0] and "--workers" in err[-1] and not any("Traceback" in e for e in err)


def test_init_of_another_architecture_and_init_with_resume_are_refused(scenes, tmp_path, capsys):
    other = tmp_path / "other.pt"
    from edge_guard.calibration.models.checkpoint import save_checkpoint
    save_checkpoint(other, build_segmenter("edge_small", width=16))
    code = main(["train", "--data", str(scenes), "--out", str(tmp_path / "x.pt"), "--steps", "1",
                 "--init", str(other), "--resume"])
    assert code == 2 and "--init and --resume" in capsys.readouterr().err


@pytest.mark.gpu
def test_trains_on_cuda(scenes, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    out = tmp_path / "cuda.pt"
    cfg = TrainConfig(data=str(scenes), out=str(out), steps=20, batch_size=4, crop=64, lr=1e-2, workers=2,
                      save_every=100, preload=True, model_kwargs={"width": 16})
    frames = open_dataset(scenes, "train")
    before = dataset_loss(build_segmenter("edge_small", mean=channel_stats(frames)[0],
                                          std=channel_stats(frames)[1], width=16), frames)
    summary = train(cfg, progress=False, log=lambda *_: None, device="cuda")
    trained, meta = load_segmenter(out)  # saved on the CPU: loads anywhere
    assert summary["steps"] == 20 and meta["train"]["history"][-1]["device"] == "cuda"
    assert dataset_loss(trained, frames) < before
