"""A user's segmentation ONNX wrapped into the bundle's contract: conventions, refusals, parity."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import torch.nn.functional as F  # noqa: E402

from edge_guard.errors import UserError  # noqa: E402
from edge_guard.export.onnx_conventions import Conventions, from_metadata, resolve  # noqa: E402
from edge_guard.export.onnx_graph import class_names, read_graph  # noqa: E402
from edge_guard.export.onnx_wrap import probe, session, wrap  # noqa: E402
from edge_guard.export.wrap_verify import Reference, upsample_linear, upsample_nearest  # noqa: E402
import onnx_models as om  # noqa: E402

SIZE = (64, 128)


def _pixels(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _wrapped(path, options, size=SIZE):
    model, info = read_graph(path, options)
    rank, out, _ = probe(model, info, size)
    return session(wrap(model, info, size, rank, out)), model, info


def _run(sess, pixels):
    return sess.run(["labels"], {"image": pixels})[0]


# ---------------------------------------------------------------- conventions

def test_normalise_is_the_stated_formula():
    px = np.array([[[[10, 20, 30]]]], np.uint8)
    c = Conventions(layout="NHWC", channels="BGR", scale=1.0, mean=(1, 2, 3), std=(2, 4, 8))
    # BGR order: (30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8
    assert c.normalise(px).ravel().tolist() == [14.5, 4.5, 0.875]
    c = Conventions(scale=255.0, mean="0.5", std="0.25")  # one value for all three channels
    assert c.normalise(px).shape == (1, 3, 1, 1)
    assert np.allclose(c.normalise(px).ravel(), (np.array([10, 20, 30]) / 255 - 0.5) / 0.25)


@pytest.mark.parametrize("kwargs, message", [
    ({"layout": "NCWH"}, "--layout"), ({"channels": "RGBA"}, "--channels"), ({"scale": 0}, "--scale"),
    ({"mean": "1,2"}, "--mean needs 3 numbers"), ({"std": "1,0,1"}, "--std must be positive"),
    ({"mean": "a,b,c"}, "--mean needs comma-separated"), ({"upsample": "cubic"}, "--upsample")])
def test_bad_conventions_are_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        Conventions(**kwargs)


def test_options_win_over_metadata_over_defaults():
    meta = from_metadata({"mean": "[1, 2, 3]", "edge_guard.channels": "bgr", "channels": "RGB", "scale": "1"})
    c = resolve({"mean": "4,5,6"}, meta)
    assert c.mean == (4, 5, 6) and c.channels == "BGR" and c.scale == 1.0 and c.layout == "NCHW"
    assert c.sources == {"mean": "option", "channels": "metadata", "scale": "metadata", "layout": "default",
                         "std": "default", "output": "default", "upsample": "default", "output_name": "default"}


def test_class_names(tmp_path):
    assert class_names(None, 19)[:2] == ["road", "sidewalk"]
    assert class_names("3", None) == ["class0", "class1", "class2"]
    names = tmp_path / "names.txt"
    names.write_text("road\n\ncar\nsky\n")
    assert class_names(str(names), 3) == ["road", "car", "sky"]
    with pytest.raises(UserError, match="gives 3 classes, but the graph's logits have 4"):
        class_names(str(names), 4)
    with pytest.raises(UserError, match="cannot be read from it: pass --classes"):
        class_names(None, None)


# ---------------------------------------------------------------- the reference's upsampling

@pytest.mark.parametrize("align", [False, True])
def test_numpy_upsampling_is_pytorchs(align):
    x = torch.randn(2, 5, 7, 9)
    want = F.interpolate(x, size=(29, 40), mode="bilinear", align_corners=align).numpy()
    assert np.allclose(upsample_linear(x.numpy(), (29, 40), align), want, atol=1e-5)
    want = F.interpolate(x, size=(29, 40), mode="nearest").numpy()
    assert np.array_equal(upsample_nearest(x.numpy(), (29, 40)), want)


# ---------------------------------------------------------------- wrapping, each convention

def test_torchvision_style_wrap_equals_the_source(tmp_path):
    path = om.torchvision_style(tmp_path / "lraspp.onnx")
    opts = {"mean": ",".join(map(str, om.IMAGENET_MEAN)), "std": ",".join(map(str, om.IMAGENET_STD))}
    sess, model, info = _wrapped(path, opts)
    assert info.conventions.layout == "NCHW"
    assert info.output_kind == "logits" and probe(model, info, SIZE)[2] == 19  # classes: from the run
    px = _pixels()
    got = _run(sess, px)
    assert got.dtype == np.int32 and got.shape == (2, *SIZE)
    # The source in PyTorch, fed by hand: the wrap's normalisation and argmax are the stack's.
    x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(om.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(om.IMAGENET_STD).view(1, 3, 1, 1)
    torch.manual_seed(0)
    net = om._Out(om.TinyLRASPP()).eval()
    with torch.no_grad():
        want = net(x).argmax(1).numpy()
    assert np.mean(got == want) >= 0.999


def test_mmdeploy_int64_labels_with_a_channel_axis(tmp_path):
    torch.manual_seed(1)
    net = om.TinyLRASPP(num_classes=7)
    path = om.mmdeploy_argmax(tmp_path / "mmdeploy.onnx", om._Out(net))
    opts = {"scale": 1.0, "mean": ",".join(map(str, om.MMSEG_MEAN)), "std": ",".join(map(str, om.MMSEG_STD))}
    sess, model, info = _wrapped(path, opts)
    assert info.output_kind == "labels" and info.output_type == "int64" and info.num_classes is None
    px = _pixels(3)
    assert np.array_equal(_run(sess, px), Reference(model, info, SIZE)(px))


@pytest.mark.parametrize("upsample", ["bilinear", "bilinear-align-corners", "nearest"])
def test_reduced_logits_are_upsampled_as_the_stack_does(tmp_path, upsample):
    import shutil

    from edge_guard.calibration.models import build_segmenter

    torch.manual_seed(2)
    seg = build_segmenter("edge_small", width=16, dilations=(1, 2)).eval()
    path = tmp_path / "bgr.onnx"
    mean, std = om.bgr_quarter(path, seg)
    opts = {"channels": "BGR", "scale": 1.0, "mean": ",".join(map(repr, mean)), "std": ",".join(map(repr, std)),
            "upsample": upsample}
    sess, model, info = _wrapped(path, opts)
    px = _pixels(2)
    got = _run(sess, px)
    assert np.mean(got == Reference(model, info, SIZE)(px)) >= 0.999
    if upsample == "bilinear":  # edge_small's own forward ends in exactly this upsampling
        x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            want = seg(x).argmax(1).numpy()
        assert np.mean(got == want) >= 0.999
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_nhwc_uint8_graph_and_reduced_labels(tmp_path):
    class Nhwc(torch.nn.Module):
        """uint8 NHWC BGR in (normalised inside), labels at 1/2 out."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 3, 2, 1)

        def forward(self, x):
            return self.conv(x.permute(0, 3, 1, 2).float() / 255).argmax(1).to(torch.int32)

    torch.manual_seed(3)
    path = om.export(Nhwc(), tmp_path / "nhwc.onnx", torch.zeros(1, *SIZE, 3, dtype=torch.uint8))
    sess, model, info = _wrapped(path, {"channels": "BGR"})
    assert info.conventions.layout == "NHWC" and info.conventions.sources["layout"] == "input shape"
    assert info.input_type == "uint8"
    px = _pixels(2)
    got = _run(sess, px)
    assert np.array_equal(got, Reference(model, info, SIZE)(px))
    assert got.shape == (2, *SIZE) and model.graph.output[0].type.tensor_type.elem_type == 6  # int32


def test_fixed_size_graphs(tmp_path):
    torch.manual_seed(4)
    conv = om.export(torch.nn.Conv2d(3, 4, 3, 1, 1), tmp_path / "conv.onnx", torch.rand(1, 3, 96, 96), dynamic=False)
    model, info = read_graph(conv)
    assert info.fixed_size == (96, 96) and info.input_dims[0] == 1
    # Fully convolutional: it runs at the new size and batch, and the wrap equals it there.
    sess, model, info = _wrapped(conv, {})
    px = _pixels(3)
    ref = Reference(model, info, SIZE)
    assert not ref.as_given and np.array_equal(_run(sess, px), ref(px))
    # The exporter baked the LR-ASPP's interpolate sizes in: it cannot run at another size.
    fixed = om.torchvision_style(tmp_path / "fixed.onnx", dynamic=False, size=(96, 96))
    model, info = read_graph(fixed)
    with pytest.raises(UserError, match="takes only 96x96 inputs and fails on 64x128 inputs.*dynamic height and width"):
        probe(model, info, SIZE)
    assert probe(model, info, (96, 96))[1] == (96, 96)


# ---------------------------------------------------------------- refusals

def test_refusals_are_one_line(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07not a model" * 50)
    with pytest.raises(UserError, match="corrupt.onnx is not a readable ONNX model|holds no graph"):
        read_graph(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_graph(tmp_path / "missing.onnx")
    two = om.export_two_inputs(tmp_path / "stereo.onnx")
    with pytest.raises(UserError, match="has 2 inputs \\('left', 'right'\\): edge-guard feeds one image"):
        read_graph(two)
    cls = om.export(om.Classifier(), tmp_path / "cls.onnx", torch.rand(1, 3, *SIZE))
    with pytest.raises(UserError, match="no per-pixel output. Is it a classification network"):
        model, info = read_graph(cls)
        probe(model, info, SIZE)
    fixed = om.export(om.FixedReshape(), tmp_path / "reshape.onnx", torch.rand(1, 3, *SIZE), dynamic=False)
    model, info = read_graph(fixed)
    with pytest.raises(UserError, match="takes only 64x128 inputs and fails on 32x32.*re-export it with dynamic"):
        probe(model, info, (32, 32))
    with pytest.raises(UserError, match="as NHWC that is 128 channels, not 3 \\(is it NCHW\\? pass --layout NCHW\\)"):
        read_graph(fixed, {"layout": "NHWC"})
    lraspp = om.torchvision_style(tmp_path / "lraspp.onnx")
    with pytest.raises(UserError, match="has no output 'logits'"):
        read_graph(lraspp, {"output_name": "logits"})
    with pytest.raises(UserError, match="labels are integers; pass --output logits"):
        read_graph(lraspp, {"output": "labels"})


def test_class_names_from_the_graphs_metadata(tmp_path):
    assert class_names(None, 3, '["road", "car", "sky"]') == ["road", "car", "sky"]
    assert class_names(None, 2, "road, car") == ["road", "car"]
    assert class_names("2", 2, "road, car") == ["class0", "class1"]  # the option wins
    with pytest.raises(UserError, match="gives 2 classes, but the graph's logits have 3"):
        class_names(None, 3, "road, car")
