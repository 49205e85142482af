"""Procedural street scenes labelled with the 19 Cityscapes train ids (NumPy and OpenCV only).

The runtime draws the demo's drive and TensorRT's engine-check frames with it; the offline
tools write data sets with it (``calibration.data.layout``).

- ``render``: ``render_frame(seed, size)``, ``render_clip(seed, length, size)``, ``make_scene``.

The generator's parts: ``world`` lays out a street in metres from a seed (``roadside``: its
buildings, walls and street furniture; ``users``: its people and traffic); ``ground``,
``structures``, ``street`` and ``agents`` draw its pieces through a ``camera`` onto a
``canvas`` (image and labels together, via ``solids``); ``appearance`` holds the colours of
real materials and the texture, light and sensor model.
"""

from .render import DEFAULT_SIZE, make_scene, render_clip, render_frame

__all__ = ["DEFAULT_SIZE", "make_scene", "render_clip", "render_frame"]
