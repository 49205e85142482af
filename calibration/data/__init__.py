"""Street scenes: the procedural generator and the loaders of Cityscapes-layout, BDD100K and
plain image folders. Needs only NumPy and OpenCV (no torch).

- ``scenes``: ``render_frame(seed, size)``, ``render_clip(seed, length, size)``.
- ``layout``: ``write_split(out_dir, split, frames, size, seed, clips, clip_length)``.
- ``folders``: ``CityscapesFolder``, ``BDD100KFolder``, ``ImageFolder``, ``open_dataset``.

The generator's parts: ``world`` lays out a street in metres from a seed; ``ground``,
``structures``, ``street`` and ``agents`` draw its pieces through a ``camera`` onto a
``canvas`` (image and labels together, via ``solids``); ``appearance`` holds the colours of
real materials and the texture, light and sensor model.
"""
