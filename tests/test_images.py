"""Issue 27, case 8: still images have a decoded-pixel cap, read from the header before
decoding (PNG, JPEG, BMP, WebP), so a small file cannot take gigabytes in `check`."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from cli_run import run_cli
from edge_guard import images
from edge_guard.errors import UserError
from edge_guard.guard import Guard
from edge_guard.images import header_size, read_image
from edge_guard.limits import DEFAULT_MAX_PIXELS
from tiny_bundle import make_guard_bundle


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path, side: int = 16000) -> int:
    """A valid grey PNG of side x side zero pixels: about 250 KB that decode to side^2 bytes
    (256 MB at 16000; 768 MB as the BGR image check() would get)."""
    row = b"\0" * (side + 1)  # filter byte + pixels
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path.stat().st_size


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.mark.parametrize("suffix,params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                           (".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
                                           (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
@pytest.mark.parametrize("size", [(17, 31), (480, 641)])
def test_header_sizes_agree_with_what_opencv_decodes(tmp_path, suffix, params, size):
    path = tmp_path / f"x{suffix}"
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image, params)
    assert header_size(path) == cv2.imread(str(path)).shape[:2] == size


def test_other_formats_have_no_header_reader_and_are_capped_after_decoding(tmp_path):
    path = tmp_path / "x.tiff"
    cv2.imwrite(str(path), np.zeros((40, 50, 3), np.uint8))
    assert header_size(path) is None
    assert read_image(path, max_pixels=2000)[0].shape == (40, 50, 3)
    image, why = read_image(path, max_pixels=1999)
    assert image is None and "40x50 = 2000 pixels, more than the cap of 1999" in why


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    assert bomb_png(path) < 300_000
    decoded = []
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: decoded.append(a) or None)
    image, why = read_image(path)
    assert image is None and not decoded
    assert f"16000x16000 = 256000000 pixels, more than the cap of {DEFAULT_MAX_PIXELS}" in why


def test_check_refuses_the_bomb_in_one_line_and_checks_the_other_images(bundle_dir, tmp_path):
    bomb, fine = tmp_path / "bomb.png", tmp_path / "fine.png"
    bomb_png(bomb)
    cv2.imwrite(str(fine), np.full((48, 64, 3), 90, np.uint8))
    rc, out, err = run_cli(["check", bomb, fine, "--bundle", bundle_dir, "--threads", "1", "--seed", "0"])
    assert rc == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"edge-guard check: error: {bomb}: 16000x16000") and "--max-pixels" in line
    assert "benign" in out and str(fine) in out


def test_max_pixels_moves_the_cap(bundle_dir, tmp_path):
    image = tmp_path / "x.jpg"
    cv2.imwrite(str(image), np.full((100, 200, 3), 90, np.uint8))
    rc, out, err = run_cli(["check", image, "--bundle", bundle_dir, "--max-pixels", "19999", "--threads", "1"])
    assert rc == 2 and "100x200 = 20000 pixels, more than the cap of 19999" in err
    rc, out, err = run_cli(["check", image, "--bundle", bundle_dir, "--max-pixels", "20000", "--threads", "1"])
    assert rc == 0, err


def test_the_guard_caps_the_frames_it_is_given(bundle_dir):
    guard = Guard.load(bundle_dir, threads=1, max_pixels=100 * 100)
    with guard:
        assert guard.check(np.zeros((100, 100, 3), np.uint8)).score == 1.0
        with pytest.raises(UserError, match="more than the guard's cap of 10000 pixels"):
            guard.check(np.zeros((100, 101, 3), np.uint8))
    with pytest.raises(UserError, match="at most 268435456"):
        Guard.load(bundle_dir, max_pixels=16384 * 16384 + 1)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00", b"\xff\xd8\xff\xda\x00\x08",
                                  b"RIFF\0\0\0\0WEBPVP8 ", b"\x89PNG\r\n\x1a\n"])
def test_truncated_headers_read_as_unknown_and_opencv_refuses_them(tmp_path, data):
    path = tmp_path / "x.img"
    path.write_bytes(data)
    assert header_size(path) is None
    assert read_image(path) == (None, "cannot read it as an image")


def test_the_jpeg_reader_skips_tables_and_thumbnails_before_the_frame_header(tmp_path):
    path = tmp_path / "x.jpg"
    cv2.imwrite(str(path), np.zeros((30, 70, 3), np.uint8))
    data = path.read_bytes()
    app = (b"\xff\xe1" + struct.pack(">H", 2 + 60_000) + b"\xff" * 60_000) * 2  # EXIF-sized APP1s
    path.write_bytes(data[:2] + app + data[2:])
    assert header_size(path) == (30, 70) and images.HEAD_BYTES < path.stat().st_size
