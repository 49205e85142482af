"""Data sets: the loaders of Cityscapes-layout, BDD100K and plain image folders, writing the
generated scenes (``edge_guard.scenes``) as such a folder, and camera conditions. Needs only
NumPy and OpenCV (no torch).

- ``layout``: ``write_split(out_dir, split, frames, size, seed, clips, clip_length)``.
- ``folders``: ``CityscapesFolder``, ``BDD100KFolder``, ``ImageFolder``, ``open_dataset``.
- ``conditions``: JPEG, noise, dusk, night, glare and motion blur, for calibration and training.
"""
