"""Segmentation models, their registry, the Segmenter wrapper and checkpoints."""

import argparse
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edge_guard.calibration.models import (CITYSCAPES_MEAN, CITYSCAPES_STD, Segmenter,
                                           build_segmenter, create_model, list_models,
                                           register_model)
from edge_guard.calibration.models.checkpoint import load_segmenter, save_checkpoint
from edge_guard.classes import NAMES
from edge_guard.errors import UserError

# Exact counts with 19 classes (including the fixed up-sampling weights and, for DLA-34,
# the unused 1000-way ImageNet classifier), checked against the official code.
DRN_D_22_PARAMS = 15_895_363
DLA34_PARAMS = 18_095_163


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in ("edge_small", "drn_d_22", "dla34")}


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert {"edge_small", "drn_d_22", "dla34"} <= set(list_models())
    with pytest.raises(UserError, match="unknown model 'drn_d_99'.*dla34.*drn_d_22.*edge_small"):
        create_model("drn_d_99")
    with pytest.raises(UserError, match="bad options"):
        create_model("edge_small", widht=64)


def test_register_model_adds_a_factory():
    @register_model(name="_test_tiny")
    def tiny(num_classes=19):
        return nn.Conv2d(3, num_classes, 1)

    assert "_test_tiny" in list_models()
    assert create_model("_test_tiny", num_classes=4).out_channels == 4


@pytest.mark.parametrize("name, exact, paper", [("drn_d_22", DRN_D_22_PARAMS, 15.9e6),
                                                ("dla34", DLA34_PARAMS, 18.1e6)])
def test_parameter_counts(nets, name, exact, paper):
    count = n_params(nets[name])
    assert abs(count - exact) <= 0.01 * exact
    assert abs(count - paper) <= 0.03 * paper


def test_drn_d_22_has_the_official_drnseg_layout(nets):
    sd = nets["drn_d_22"].state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert len(sd) == 153
    assert shapes["base.0.0.weight"] == (16, 3, 7, 7)
    assert shapes["base.3.0.downsample.0.weight"] == (64, 32, 1, 1)   # layer3, first block
    assert shapes["base.6.1.conv2.weight"] == (512, 512, 3, 3)       # layer6, dilation 4
    assert shapes["base.8.0.weight"] == (512, 512, 3, 3)             # layer8, last conv
    assert shapes["seg.weight"] == (19, 512, 1, 1) and shapes["seg.bias"] == (19,)
    assert shapes["up.weight"] == (19, 1, 16, 16)
    assert not any(k.startswith(("base.9", "base.fc", "softmax")) for k in sd)
    assert nets["drn_d_22"].base[6][0].conv1.dilation == (4, 4)
    assert not nets["drn_d_22"].up.weight.requires_grad


def test_dla34_has_the_official_dlaseg_layout(nets):
    sd = nets["dla34"].state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert len(sd) == 369
    assert shapes["base.base_layer.0.weight"] == (16, 3, 7, 7)
    assert shapes["base.fc.weight"] == (1000, 512, 1, 1) and shapes["base.fc.bias"] == (1000,)
    assert shapes["base.level3.tree2.root.conv.weight"] == (128, 448, 1, 1)
    assert shapes["base.level5.root.conv.weight"] == (512, 1280, 1, 1)
    assert shapes["dla_up.ida_0.proj_1.0.weight"] == (256, 512, 1, 1)
    assert shapes["dla_up.ida_0.up_1.weight"] == (256, 1, 4, 4)
    assert shapes["dla_up.ida_3.node_4.0.weight"] == (32, 64, 3, 3)
    assert shapes["fc.0.weight"] == (19, 32, 1, 1)
    assert shapes["up.weight"] == (19, 1, 4, 4)
    assert not nets["dla34"].up.weight.requires_grad
    assert nets["dla34"].dla_up.ida_0.up_1.weight.requires_grad


@pytest.mark.parametrize("name", ["drn_d_22", "dla34"])
def test_fixed_upsampling_is_bilinear(nets, name):
    up = nets[name].up
    f = up.stride[0]
    with torch.no_grad():
        y = up(torch.ones(1, 19, 6, 6))
    assert y.shape[-1] == 6 * f
    # A constant map stays constant away from the zero-padded border.
    assert torch.allclose(y[..., f:-f, f:-f], torch.ones(()), atol=1e-6)


@pytest.mark.parametrize("name", ["edge_small", "drn_d_22", "dla34"])
def test_forward_returns_logits_at_input_resolution(nets, name):
    seg = Segmenter(nets[name], name, 19)
    with torch.no_grad():
        assert seg(torch.rand(1, 3, 256, 512)).shape == (1, 19, 256, 512)
        # Sizes that are not multiples of the output stride come back at input size too.
        assert seg(torch.rand(1, 3, 61, 75)).shape == (1, 19, 61, 75)


def test_segmenter_normalises_before_the_net():
    seg = Segmenter(nn.Identity(), "identity", 3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = torch.rand(2, 3, 4, 5)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(seg(x), expected)
    assert seg.mean == (0.1, 0.2, 0.3) and seg.std == (0.5, 0.25, 2.0)
    assert seg.state_dict() == {}  # normalisation is not part of the net's weights


def test_logit_bias_is_added_to_every_pixel_and_can_be_removed():
    seg = Segmenter(nn.Identity(), "identity", 3, mean=(0, 0, 0), std=(1, 1, 1), logit_bias=(1.0, -2.0, 0.5))
    x = torch.rand(2, 3, 4, 5)
    assert torch.allclose(seg(x), x + torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1))
    assert torch.equal(seg.raw_logits(x), x)
    assert seg.state_dict() == {}  # the official layout of the net's weights stays untouched
    seg.set_logit_bias(None)
    assert torch.equal(seg(x), x)
    with pytest.raises(ValueError, match="needs 3 values"):
        seg.set_logit_bias([0.0, 1.0])


def test_checkpoint_round_trip_keeps_weights_options_and_train_state(tmp_path):
    torch.manual_seed(1)
    seg = build_segmenter("edge_small", width=32, dilations=(1, 2), mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.3))
    opt = torch.optim.SGD(seg.parameters(), lr=0.1, momentum=0.9)
    seg(torch.rand(2, 3, 32, 32)).mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", seg, {"step": 7, "optimizer": opt.state_dict()})

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "edge-guard" and raw["version"] == 1 and raw["model"] == "edge_small"
    assert raw["class_names"] == list(NAMES) and raw["num_classes"] == 19

    loaded, meta = load_segmenter(path)
    assert loaded.name == "edge_small" and loaded.model_kwargs == {"width": 32, "dilations": (1, 2)}
    assert loaded.mean == (0.4, 0.5, 0.6) and loaded.std == (0.2, 0.2, 0.3)
    assert meta["train"]["step"] == 7 and "state_dict" not in meta
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(meta["train"]["optimizer"])
    x = torch.rand(1, 3, 40, 48)
    seg.eval()
    with torch.no_grad():
        assert torch.equal(seg(x), loaded(x))
    assert loaded.logit_bias is None and raw["logit_bias"] is None

    seg.set_logit_bias([0.1 * i for i in range(19)])
    loaded, meta = load_segmenter(save_checkpoint(tmp_path / "biased.pt", seg))
    assert loaded.logit_bias == seg.logit_bias and meta["logit_bias"] == list(seg.logit_bias)
    with torch.no_grad():
        assert torch.equal(seg(x), loaded(x))


@pytest.mark.parametrize("name, wrap", [("drn_d_22", True), ("dla34", True), ("drn_d_22", False)])
def test_official_checkpoints_load_with_arch(nets, tmp_path, name, wrap):
    net = nets[name]
    # Official training scripts save a DataParallel model: every key has a 'module.' prefix.
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state} if wrap else state, tmp_path / "official.pth")

    seg, meta = load_segmenter(tmp_path / "official.pth", arch=name)
    assert meta["format"] == "official" and seg.name == name
    assert seg.mean == CITYSCAPES_MEAN and seg.std == CITYSCAPES_STD
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(seg(x), Segmenter(net, name, 19)(x))


def test_cityscapes_statistics_are_those_of_the_drn_repository():
    assert np.allclose(CITYSCAPES_MEAN, [0.290101, 0.328081, 0.286964], atol=1e-6)
    assert np.allclose(CITYSCAPES_STD, [0.182954, 0.186566, 0.184475], atol=1e-6)


def test_load_errors_are_one_line_user_errors(nets, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_segmenter(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_segmenter(tmp_path / "text.pt")
    torch.save({"hello": "world"}, tmp_path / "dict.pt")
    with pytest.raises(UserError, match="not a model checkpoint"):
        load_segmenter(tmp_path / "dict.pt")

    drn_state = tmp_path / "drn.pth"
    torch.save(nets["drn_d_22"].state_dict(), drn_state)
    with pytest.raises(UserError, match="without an architecture name: pass --arch"):
        load_segmenter(drn_state)
    with pytest.raises(UserError, match="unknown model 'resnet'"):
        load_segmenter(drn_state, arch="resnet")
    with pytest.raises(UserError, match=r"does not fit model 'dla34': \d+ missing keys .*\d+ unexpected keys"):
        load_segmenter(drn_state, arch="dla34")
    with pytest.raises(UserError, match="shape mismatches.*seg.weight.*num_classes"):
        load_segmenter(drn_state, arch="drn_d_22", num_classes=21)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_our_checkpoint_errors(tmp_path):
    seg = build_segmenter("edge_small", width=16, dilations=(1,))
    path = save_checkpoint(tmp_path / "m.pt", seg)
    with pytest.raises(UserError, match="holds a 'edge_small' model, not 'dla34'"):
        load_segmenter(path, arch="dla34")
    raw = torch.load(path, weights_only=True)
    raw["version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(UserError, match="version 99"):
        load_segmenter(tmp_path / "future.pt")
    # A pickled class that only a full (unsafe) unpickler could rebuild is refused, not run.
    torch.save({"state_dict": seg.net.state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "unsafe.pt")
    with pytest.raises(UserError, match="cannot be loaded safely.*argparse.Namespace"):
        load_segmenter(tmp_path / "unsafe.pt", arch="edge_small")
    raw = torch.load(path, weights_only=True)
    raw["logit_bias"] = [0.0] * 18 + [float("nan")]
    torch.save(raw, tmp_path / "nan_bias.pt")
    with pytest.raises(UserError, match="logit_bias is not 19 finite numbers"):
        load_segmenter(tmp_path / "nan_bias.pt")
    with open(tmp_path / "pickle.pt", "wb") as f:
        pickle.dump({"a": 1}, f, protocol=4)
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_segmenter(tmp_path / "pickle.pt")


def test_official_training_checkpoint_with_numpy_score_loads(nets, tmp_path):
    # fyu/drn and ucbdrive/dla save_checkpoint(): epoch, arch, DataParallel state_dict and
    # best_prec1, which their validate() returns as a numpy float.
    net = nets["drn_d_22"]
    torch.save({"epoch": 3, "arch": "drn_d_22", "best_prec1": np.float64(71.5),
                "state_dict": {"module." + k: v for k, v in net.state_dict().items()}},
               tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError, match="pass --arch.*the file says arch='drn_d_22'"):
        load_segmenter(tmp_path / "checkpoint.pth.tar")
    seg, _ = load_segmenter(tmp_path / "checkpoint.pth.tar", arch="drn_d_22")
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(seg.net(x), net(x))


def test_edge_small_exports_to_plain_onnx_opset_17(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = create_model("edge_small", width=32, dilations=(1, 2)).eval()
    x = torch.rand(1, 3, 64, 96)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its successor
        torch.onnx.export(net, (x,), str(path), opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamo=False)
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4)
