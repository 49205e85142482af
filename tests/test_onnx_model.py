"""A user's segmentation ONNX as a differentiable Segmenter (calibration/models/onnx_model.py):
logits and input gradients against the PyTorch source under each input convention, upsampled
low-resolution logits, labels graphs cut before their ArgMax, the torchvision placeholder of
onnx_import.py, and `evaluate --onnx` / `attack --onnx` end to end."""

import importlib.util
import json
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
if importlib.util.find_spec("onnx2torch") is None:  # not importorskip: it needs the placeholder here
    pytest.skip("onnx2torch is not installed (extra onnx-eval)", allow_module_level=True)

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from blocked_imports import run_without  # noqa: E402
from cli_run import run_cli  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.onnx_model import describe, load_onnx, load_onnx_segmenter  # noqa: E402
from edge_guard.calibration.models.segmenter import Segmenter, labels_of  # noqa: E402
from edge_guard.classes import NAMES  # noqa: E402
from edge_guard.errors import UserError  # noqa: E402
from edge_guard.export.onnx_conventions import Conventions  # noqa: E402

FRAME = (64, 128)
#: Float32 through a converted graph: the same ops in another order. Measured on edge_small
#: (width 16) at 64x128: logits within 1.2e-6, gradients within 3.6e-7 of their largest value.
LOGITS_ATOL = 1e-4
GRAD_RTOL = 1e-5


def _export(net: nn.Module, path, example, dims: dict) -> None:
    """torch.onnx.export at opset 17 (the TorchScript exporter: 10x faster than dynamo here)
    with the dynamic axes ``dims`` ({axis: name}) on the input and the output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (example,), str(path), input_names=["image"], output_names=["out"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={"image": dims, "out": {0: "n"}})


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    seg = build_segmenter("edge_small", width=16, dilations=(1, 2)).eval()
    with torch.no_grad():  # BN statistics that are not the identity, so folding them is checked
        for m in seg.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    for p in seg.parameters():
        p.requires_grad_(False)
    return seg


@pytest.fixture(scope="module")
def nchw_onnx(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    _export(tiny.net, path, torch.zeros(1, 3, *FRAME), {0: "n", 2: "h", 3: "w"})
    return path


def _compare(source: Segmenter, loaded: Segmenter, shape=(2, 3, *FRAME)) -> dict:
    """Max |difference| of logits and of the input gradient of a cross-entropy loss, asserted
    within LOGITS_ATOL and GRAD_RTOL (of the gradient's largest value)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g)
    target = torch.randint(0, source.num_classes, (shape[0], *shape[2:]), generator=g)
    out = {}
    grads = []
    for model in (source, loaded):
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
        grads.append(torch.autograd.grad(F.cross_entropy(logits, target), xx)[0])
        out.setdefault("logits", []).append(logits.detach())
    a, b = out["logits"]
    assert a.shape == b.shape
    logit_err = (a - b).abs().max().item()
    grad_err = ((grads[0] - grads[1]).abs().max() / grads[0].abs().max()).item()
    assert logit_err <= LOGITS_ATOL, logit_err
    assert grad_err <= GRAD_RTOL, grad_err
    return {"logits": logit_err, "grad": grad_err}


# ---------------------------------------------------------------- conventions

def test_nchw_rgb_logits_and_gradients_match_the_source(tiny, nchw_onnx):
    conv = Conventions(mean=tiny.mean, std=tiny.std)  # scale 255: mean and std in 0-1 units
    seg = load_onnx_segmenter(nchw_onnx, conv)
    assert seg.name == "onnx:tiny.onnx" and seg.num_classes == 19 and seg.class_names == tuple(NAMES)
    assert np.allclose(seg.mean, tiny.mean) and np.allclose(seg.std, tiny.std)
    assert not any(p.requires_grad for p in seg.parameters())
    _compare(tiny, seg)
    _compare(tiny, seg, (1, 3, 48, 96))  # another size: the graph's height and width are free
    d = describe(seg)
    assert d["file"] == "tiny.onnx" and d["cut_before_argmax"] is None and d["conventions"]["scale"] == 255
    assert "RGB order, NCHW" in d["formula"]


class NhwcBgr255(nn.Module):
    """NHWC BGR pixels normalised in 0-255 units -> NHWC logits: a TensorFlow-style graph of the
    same function as ``net`` on RGB NCHW input normalised in 0-1 units."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, g):
        return self.net(g.permute(0, 3, 1, 2)[:, [2, 1, 0]]).permute(0, 2, 3, 1)


def test_nhwc_bgr_0_255_logits_and_gradients_match_the_source(tiny, tmp_path):
    path = tmp_path / "nhwc.onnx"
    _export(NhwcBgr255(tiny.net), path, torch.zeros(1, *FRAME, 3), {0: "n", 1: "h", 2: "w"})
    # The graph's channel order is BGR: its mean/std in that order, in 0-255 units.
    mean = [m * 255 for m in tiny.mean[::-1]]
    std = [s * 255 for s in tiny.std[::-1]]
    conv = Conventions(layout="NHWC", channels="BGR", scale=1, mean=mean, std=std)
    seg = load_onnx_segmenter(path, conv)
    assert np.allclose(seg.mean, tiny.mean) and np.allclose(seg.std, tiny.std)  # back to RGB 0-1
    _compare(tiny, seg)
    # Through the CLI's options, the layout left out: the input's shape (N, ?, ?, 3) tells it,
    # as it does for `calibrate --onnx`.
    options = {"channels": "BGR", "scale": 1, "mean": ",".join(map(str, mean)), "std": ",".join(map(str, std))}
    d = describe(load_onnx(path, options))
    assert d["conventions"]["layout"] == "NHWC" and d["conventions"]["sources"]["layout"] == "input shape"
    # The reference normalisation of the conventions feeds the graph what the Segmenter feeds it.
    pixels = np.random.default_rng(0).integers(0, 256, (1, *FRAME, 3), dtype=np.uint8)
    graph_input = torch.from_numpy(conv.normalise(pixels))
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = NhwcBgr255(tiny.net)(graph_input).permute(0, 3, 1, 2)
        assert (seg(x) - ref).abs().max().item() <= LOGITS_ATOL


def test_wrong_layout_is_named(tiny, tmp_path):
    path = tmp_path / "nhwc_fixed.onnx"
    _export(NhwcBgr255(tiny.net), path, torch.zeros(1, *FRAME, 3), {0: "n"})  # fixed 64x128x3
    with pytest.raises(UserError, match="--layout NHWC"):
        load_onnx_segmenter(path, Conventions())


class Stride8(nn.Module):
    """Normalised RGB -> logits at 1/8 resolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(8, 19, 3, 2, 1))

    def forward(self, z):
        return self.body(z)


class Upsampled(nn.Module):
    def __init__(self, net, mode):
        super().__init__()
        self.net, self.mode = net, mode

    def forward(self, z):
        low = self.net(z)
        if self.mode == "nearest":
            return F.interpolate(low, size=z.shape[-2:], mode="nearest")
        return F.interpolate(low, size=z.shape[-2:], mode="bilinear",
                             align_corners=self.mode == "bilinear-align-corners")


@pytest.fixture(scope="module")
def stride8_onnx(tmp_path_factory):
    net = Stride8().eval()
    path = tmp_path_factory.mktemp("onnx8") / "stride8.onnx"
    _export(net, path, torch.zeros(1, 3, *FRAME), {0: "n", 2: "h", 3: "w"})
    return net, path


@pytest.mark.parametrize("mode", ["bilinear", "bilinear-align-corners", "nearest"])
def test_low_resolution_logits_are_upsampled_as_the_conventions_say(stride8_onnx, mode):
    net, path = stride8_onnx
    seg = load_onnx_segmenter(path, Conventions(upsample=mode))
    source = Segmenter(Upsampled(net, mode), "stride8", 19, (0, 0, 0), (1, 1, 1)).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, *FRAME)).shape[-2:] == (FRAME[0] // 8, FRAME[1] // 8)
    _compare(source, seg)


# ---------------------------------------------------------------- labels graphs

class WithArgmax(nn.Module):
    """mmdeploy's with_argmax: (N, 1, H, W) int64 class ids."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z):
        return self.net(z).argmax(1, keepdim=True)


class WithTopk(nn.Module):
    """Labels without an ArgMax (TopK's indices)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z):
        return self.net(z).topk(1, dim=1).indices


def test_a_labels_graph_is_cut_before_its_argmax(tiny, tmp_path):
    import onnxruntime as ort

    path = tmp_path / "argmax.onnx"
    _export(WithArgmax(tiny.net), path, torch.zeros(1, 3, *FRAME), {0: "n", 2: "h", 3: "w"})
    proto = onnx.load(str(path))
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert proto.graph.node[-1].op_type == "ArgMax"
    lines = []
    conv = Conventions(mean=tiny.mean, std=tiny.std)
    seg = load_onnx_segmenter(path, conv, log=lines.append)
    assert len(lines) == 1 and "ArgMax" in lines[0] and "labels" in lines[0]
    assert describe(seg)["cut_before_argmax"] and describe(seg)["upsample"] == "nearest"
    _compare(tiny, seg)
    # The cut net's argmax is the graph's own labels (ONNX Runtime on the uncut graph).
    pixels = np.random.default_rng(3).integers(0, 256, (2, *FRAME, 3), dtype=np.uint8)
    labels = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": conv.normalise(pixels)})[0][:, 0]
    with torch.no_grad():
        ours = labels_of(seg(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)).numpy()
    assert (ours == labels).mean() > 0.999


def test_a_labels_graph_without_an_argmax_is_refused(tiny, tmp_path):
    path = tmp_path / "topk.onnx"
    _export(WithTopk(tiny.net), path, torch.zeros(1, 3, *FRAME), {0: "n", 2: "h", 3: "w"})
    with pytest.raises(UserError, match="white-box attacks need the graph's logits") as err:
        load_onnx_segmenter(path, Conventions())
    assert "\n" not in str(err.value) and "without the argmax" in str(err.value)
    with pytest.raises(UserError, match="--output logits"):
        load_onnx_segmenter(path, Conventions(output="logits"))


def test_class_names_and_counts(nchw_onnx, tmp_path):
    names = [f"c{i}" for i in range(19)]
    assert load_onnx_segmenter(nchw_onnx, Conventions(), classes=names).class_names == tuple(names)
    (tmp_path / "names.txt").write_text("\n".join(names[::-1]) + "\n\n")
    assert load_onnx_segmenter(nchw_onnx, Conventions(), classes=tmp_path / "names.txt").class_names == \
        tuple(names[::-1])
    with pytest.raises(UserError, match="--classes gives 3 classes, but the graph's logits have 19"):
        load_onnx_segmenter(nchw_onnx, Conventions(), classes=["a", "b", "c"])
    with pytest.raises(UserError, match="--classes gives 5 classes"):
        load_onnx_segmenter(nchw_onnx, Conventions(), classes=5)


# ---------------------------------------------------------------- torchvision placeholder

FAKE_TORCHVISION = {
    # imports: onnx2torch takes it as it is
    "working": {"__init__.py": "from . import ops\n",
                "ops.py": "def nms(*a): return 'real'\ndef roi_align(*a): return 'real'\n"
                          "def box_convert(*a): return 'real'\n"},
    # as PyPI's wheel beside the CPU torch: a submodule imports, then the package fails
    "broken": {"__init__.py": "from . import extension\n"
                              "raise RuntimeError('operator torchvision::nms does not exist')\n",
               "extension.py": ""},
}


@pytest.mark.parametrize("case", ["working", "broken", "missing"])
def test_onnx2torch_imports_with_or_without_a_usable_torchvision(tmp_path, case):
    for name, text in FAKE_TORCHVISION.get(case, {}).items():
        (tmp_path / "torchvision").mkdir(exist_ok=True)
        (tmp_path / "torchvision" / name).write_text(text)
    body = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        if {case!r} == "missing":
            sys.modules["torchvision"] = None  # `import torchvision` raises ImportError
        from edge_guard.calibration.models.onnx_import import import_onnx2torch
        from edge_guard.errors import UserError
        onnx2torch = import_onnx2torch()
        from onnx2torch.node_converters import nms, roialign
        left = sorted(n for n in sys.modules if n.split(".")[0] == "torchvision" and sys.modules[n])
        try:
            result = nms.torchvision.ops.nms(None, None, 0.5)
        except UserError as exc:
            result = "UserError: " + str(exc)
        try:
            roialign.roi_align(None, None, 1)
        except UserError as exc:
            result += " | roi_align UserError"
        print(repr((left, result, hasattr(onnx2torch, "convert"))))
    """)
    done = run_without([], body, timeout=120)
    assert done.returncode == 0, done.stderr
    left, result, converts = eval(done.stdout.strip().splitlines()[-1])
    assert converts
    if case == "working":
        assert result == "real" and "torchvision" in left
    else:
        # The placeholder was there for onnx2torch's import only, with the half import cleared.
        assert left == [], left
        assert result.startswith("UserError: the graph uses torchvision.ops.nms") and "roi_align UserError" in result
        reason = "RuntimeError: operator torchvision::nms" if case == "broken" else "torchvision halted"
        assert reason in result


# ---------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def workspace(tiny, nchw_onnx, tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("onnx_eval")
    write_split(root / "data", split="val", frames=2, size=FRAME, seed=5, progress=False)
    conventions = ["--scale", "255", "--mean", ",".join(map(str, tiny.mean)), "--std", ",".join(map(str, tiny.std))]
    return {"root": root, "data": root / "data", "onnx": nchw_onnx, "conventions": conventions}


def _evaluate_args(ws, out):
    return ["evaluate", "--onnx", ws["onnx"], *ws["conventions"], "--data", ws["data"], "--out", out,
            "--frame", f"{FRAME[0]}x{FRAME[1]}", "--patch", "48", "--b-low", "4", "--b-high", "8",
            "--ks", "1", "--stds", "0.5", "--k-attack", "0,1", "--k-pairs", "0", "--k-frame", "0",
            "--k-agree", "0", "--methods", "dag", "--targets", "pure", "--max-iter", "2",
            "--benign", "2", "--adversarial", "1", "--entropy-patches", "4", "--skip", "fig8,scale-adaptive",
            "--device", "cpu", "--quiet"]


def test_evaluate_onnx_runs_the_grid_and_records_the_graph(workspace, tiny):
    from edge_guard.engine_cache import sha256_file

    out = workspace["root"] / "eval"
    rc, stdout, stderr = run_cli(_evaluate_args(workspace, out))
    assert rc == 0, stderr
    results = json.loads((out / "results.json").read_text())
    model = results["model"]
    assert model["arch"] == "onnx" and model["sha256"] == sha256_file(workspace["onnx"])
    onnx_rec = model["onnx"]
    assert onnx_rec["file"] == "tiny.onnx" and onnx_rec["sha256"] == model["sha256"]
    assert np.allclose(onnx_rec["conventions"]["mean"], tiny.mean)
    assert onnx_rec["conventions"]["sources"]["mean"] == "option"
    assert onnx_rec["conventions"]["sources"]["layout"] == "default"
    assert results["settings"]["onnx"]["scale"] == 255.0
    assert set(results["attacks"]) == {"dag_pure_plain", "dag_pure_spatial1"}  # plain and adaptive
    auc = {(r["detector"], r["adaptive"]): r["auc"] for r in results["table1"]}
    assert None not in [auc["scale", False], auc["spatial", False], auc["spatial", True], auc["frame", False]]
    manifest = json.loads((out / results["attacks"]["dag_pure_plain"]["folder"] / "manifest.json").read_text())
    assert manifest["settings"]["arch"] == "onnx" and manifest["settings"]["onnx"]["conventions"]["scale"] == 255
    assert "your ONNX graph `tiny.onnx`" in (out / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--model", "MODEL"], "--onnx and --model are exclusive"),
    (["--skip", "fig3"], "Fig. 8 trains three models"),   # --skip fig3 replaces --skip fig8,...
    (["--arch", "drn_d_22"], "--arch names an official checkpoint"),
    (["--classes", "gone.txt"], "--classes gone.txt: no such file"),
    (["--layout", "NHWC"], "as NHWC its channel axis should be 3 (is it NCHW? --layout NCHW)"),
])
def test_evaluate_onnx_mistakes_exit_2_in_one_line(workspace, tmp_path, extra, message):
    from edge_guard.paths import DEFAULT_MODEL

    extra = [str(DEFAULT_MODEL) if e == "MODEL" else e for e in extra]
    args = [str(a) for a in _evaluate_args(workspace, tmp_path / "o")]
    if extra[0] == "--skip":
        i = args.index("--skip")
        del args[i:i + 2]
    rc, _, stderr = run_cli(args + extra)
    assert rc == 2, stderr
    assert stderr.count("\n") == 1 and message in stderr


def test_convention_options_need_onnx(workspace, tmp_path):
    rc, _, stderr = run_cli(["evaluate", "--data", workspace["data"], "--out", tmp_path / "o", "--quick",
                             "--quiet", "--layout", "NHWC"])
    assert rc == 2 and "--layout describes an ONNX graph" in stderr and stderr.count("\n") == 1


def test_attack_onnx(workspace, tmp_path):
    out = tmp_path / "attack"
    rc, stdout, stderr = run_cli(["attack", "--onnx", workspace["onnx"], *workspace["conventions"],
                                  "--data", workspace["data"], "--method", "dag", "--target", "pure",
                                  "--max-iter", "1", "--limit", "1", "--device", "cpu", "--out", out])
    assert rc == 0, stderr
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["arch"] == "onnx" and settings["onnx"]["output"] == "out"
    # Other conventions are another model: the folder refuses them rather than mixing attacks.
    rc, _, stderr = run_cli(["attack", "--onnx", workspace["onnx"], "--data", workspace["data"],
                             "--method", "dag", "--target", "pure", "--max-iter", "1", "--limit", "1",
                             "--device", "cpu", "--out", out])
    assert rc == 2 and "other settings" in stderr
