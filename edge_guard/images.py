"""Read a still image with a cap on its decoded size, checked from its header first.

A small compressed file can decode to gigabytes (a 31 KB PNG of one colour holds 16000 x
16000 pixels: 768 MB as BGR). OpenCV has no call that reads only an image's size, so the
dimensions of PNG, JPEG, BMP and WebP files are read here from their first bytes and a file
over the cap is refused before it is decoded. Other formats (TIFF, PNM, ...) are decoded by
OpenCV, within its own limit (OPENCV_IO_MAX_IMAGE_PIXELS, 2^30 pixels by default), and
refused after decoding when over the cap.
"""

from __future__ import annotations

import os
import struct

from .errors import UserError
from .limits import DEFAULT_MAX_PIXELS, MAX_PIXELS

#: Bytes read for the header: enough for every format below (JPEG's size marker comes after
#: its tables and a thumbnail, so JPEG reads on through the file if it must).
HEAD_BYTES = 64 * 1024


def check_max_pixels(max_pixels) -> int:
    """``max_pixels`` validated: a positive integer up to MAX_PIXELS (UserError otherwise)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_pixels > MAX_PIXELS:
        raise UserError(f"max_pixels is at most {MAX_PIXELS} (16384 x 16384), got {max_pixels}")
    return max_pixels


def _png(head: bytes):
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    return None


def _bmp(head: bytes):
    if head[:2] == b"BM" and len(head) >= 26:
        header = struct.unpack("<I", head[14:18])[0]
        if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return abs(height), abs(width)  # a negative height is a top-down bitmap
    return None


def _webp(head: bytes):
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return height, width
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + ((bits >> 14) & 0x3FFF), 1 + (bits & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return height & 0x3FFF, width & 0x3FFF
    return None


# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(f) -> tuple | None:
    f.seek(0)
    if f.read(2) != b"\xff\xd8":
        return None
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # padding or garbage between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            return None
        size = f.read(2)
        if len(size) < 2:
            return None
        length = struct.unpack(">H", size)[0]
        if marker in _SOF:
            body = f.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            return height, width
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)


def header_size(path) -> tuple[int, int] | None:
    """(height, width) from the file's header for PNG, JPEG, BMP and WebP; None for other
    formats or a header that cannot be read."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        for reader in (_png, _bmp, _webp):
            size = reader(head)
            if size is not None:
                return size
        return _jpeg(f)


def _too_large(path, height: int, width: int, max_pixels: int) -> str:
    return (f"{height}x{width} = {height * width} pixels, more than the cap of {max_pixels} "
            "(raise it with --max-pixels, or max_pixels=)")


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(image BGR uint8, None), or (None, why it is not read) for a missing, unreadable or
    too large image (more than ``max_pixels`` decoded pixels, from the header when it can
    be read: see the module's note)."""
    import cv2

    max_pixels = check_max_pixels(max_pixels)
    path = os.fspath(path)
    if not os.path.isfile(path):  # before OpenCV, which would print a warning of its own
        return None, "no such file" if not os.path.exists(path) else "not a file"
    try:
        size = header_size(path)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if size is not None and size[0] * size[1] > max_pixels:
        return None, _too_large(path, *size, max_pixels)
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR uint8; grey and 16-bit are converted
    if image is None or image.size == 0:
        return None, "cannot read it as an image"
    if image.shape[0] * image.shape[1] > max_pixels:
        return None, _too_large(path, *image.shape[:2], max_pixels)
    return image, None
