"""What a user's segmentation ONNX expects and gives: its input and output conventions.

A graph exported by someone else's training stack takes float pixels in its own layout,
channel order, range and normalisation, and gives logits or labels at its own resolution.
:class:`Conventions` names those choices; the user states them with options, the graph's
own metadata fills what the options leave out, and the rest are defaults:

    input value = (pixel / scale - mean) / std      pixel: the 8-bit value, 0..255
                  in ``channels`` order, laid out as ``layout``; mean and std are given
                  in that channel order too, as the config that feeds the graph writes them

``scale`` 255 gives the 0-1 range with mean/std in 0-1 units (torchvision); ``scale`` 1 gives
0-255 with mean/std in 0-255 units (mmsegmentation: mean 123.675, 116.28, 103.53).

Logits at a lower resolution than the input are upsampled to it before the argmax with
``upsample``: ``bilinear`` is PyTorch's ``interpolate(mode="bilinear", align_corners=False)``
(mmsegmentation's ``resize`` and torchvision's heads use it), ``bilinear-align-corners`` the
same with ``align_corners=True`` (DeepLab's TensorFlow exports), ``nearest`` nearest
neighbour. Labels at a lower resolution are always upsampled by nearest neighbour.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

from edge_guard.errors import UserError

LAYOUTS = ("NCHW", "NHWC")
CHANNELS = ("RGB", "BGR")
OUTPUTS = ("auto", "logits", "labels")
UPSAMPLES = ("bilinear", "bilinear-align-corners", "nearest")

#: metadata_props keys read from the graph (the values as the options take them; mean/std as
#: JSON lists or comma-separated numbers). ``edge_guard.<key>`` is read first, then ``<key>``.
METADATA_KEYS = ("layout", "channels", "scale", "mean", "std", "output", "upsample", "class_names")


@dataclass(frozen=True)
class Conventions:
    """How to feed a user's graph and read its output; see the module docstring."""

    layout: str = "NCHW"
    channels: str = "RGB"
    scale: float = 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    output: str = "auto"
    upsample: str = "bilinear"
    #: which of the graph's outputs is the segmentation (None: the only one, or the first)
    output_name: str | None = None
    #: where each value came from: {"mean": "option", "layout": "metadata", ...}; not compared
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        _choice(self.layout, LAYOUTS, "--layout")
        _choice(self.channels, CHANNELS, "--channels")
        _choice(self.output, OUTPUTS, "--output")
        _choice(self.upsample, UPSAMPLES, "--upsample")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise UserError(f"--scale must be a positive number, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", _triple(self.mean, "--mean"))
        object.__setattr__(self, "std", _triple(self.std, "--std"))
        if min(self.std) <= 0:
            raise UserError(f"--std must be positive, got {','.join(f'{v:g}' for v in self.std)}")

    def normalise(self, pixels):
        """uint8 (N, H, W, 3) RGB -> the graph's float32 input (NumPy): the reference the
        wrapped graph is checked against."""
        import numpy as np

        x = np.asarray(pixels, np.float32)
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = (x / np.float32(self.scale) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x, np.float32)

    def formula(self) -> str:
        """The normalisation in words, as guard.json records it."""
        mean = ", ".join(f"{v:g}" for v in self.mean)
        std = ", ".join(f"{v:g}" for v in self.std)
        return f"(pixel / {self.scale:g} - [{mean}]) / [{std}], {self.channels} order, {self.layout}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def _choice(value, choices, option):
    if value not in choices:
        raise UserError(f"{option} {value!r} is not one of {', '.join(choices)}")


def _triple(value, option) -> tuple:
    if isinstance(value, str):
        value = parse_numbers(value, option)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{option} needs 3 numbers (one per channel, in the graph's channel order), got {value!r}") from None
    if len(out) == 1:
        out = out * 3
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise UserError(f"{option} needs 3 numbers (one per channel, in the graph's channel order), got {value!r}")
    return out


def parse_numbers(text: str, option: str) -> tuple:
    """'0.485,0.456,0.406' or '[0.485, 0.456, 0.406]' -> floats; UserError otherwise."""
    text = str(text).strip()
    try:
        value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{option} needs comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None


def from_metadata(props: dict) -> dict:
    """The conventions a graph's metadata_props state: {field: value}, unparsed values kept as
    strings for the Conventions checks to judge (and name)."""
    out = {}
    for key in METADATA_KEYS:
        for name in (f"edge_guard.{key}", key):
            if name in props and str(props[name]).strip():
                out[key] = str(props[name]).strip()
                break
    if "scale" in out:
        try:
            out["scale"] = float(out["scale"])
        except ValueError:
            raise UserError(f"the graph's metadata gives scale {out['scale']!r}, not a number: "
                            "pass --scale") from None
    if "layout" in out:
        out["layout"] = out["layout"].upper()
    if "channels" in out:
        out["channels"] = out["channels"].upper()
    return out


def resolve(options: dict, metadata: dict) -> Conventions:
    """Options (None where not given) over the graph's metadata over the defaults.

    ``class_names`` is not a convention of the input and is left out here (see
    :func:`edge_guard.export.onnx_graph.class_names`).
    """
    known = {f.name for f in fields(Conventions)} - {"sources"}
    values, sources = {}, {}
    for key in known:
        if options.get(key) is not None:
            values[key], sources[key] = options[key], "option"
        elif metadata.get(key) is not None:
            values[key], sources[key] = metadata[key], "metadata"
    conv = Conventions(**values)
    for key in known - set(sources):
        sources[key] = "default"
    return replace(conv, sources=sources)
