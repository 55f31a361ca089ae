"""Decoding: every format and pixel mode becomes 8-bit RGB, oriented, at its original size."""

import numpy as np
import pytest
from conftest import write_image
from PIL import Image

from gradcam_cli.errors import ImageError
from gradcam_cli.files.images import load_rgb, model_view


@pytest.mark.parametrize("suffix,kwargs", [
    (".png", {}), (".jpg", {"quality": 95}), (".bmp", {}), (".tif", {}), (".webp", {"lossless": True}),
    (".gif", {}),
])
def test_formats_decode_to_rgb_at_original_size(tmp_path, suffix, kwargs):
    path = write_image(tmp_path / f"x{suffix}", (37, 23), seed=3, **kwargs)
    rgb = load_rgb(path)
    assert rgb.shape == (23, 37, 3) and rgb.dtype == np.uint8
    if suffix in (".png", ".bmp", ".tif", ".webp"):  # lossless: the exact pixels come back
        np.testing.assert_array_equal(rgb, np.asarray(Image.open(path).convert("RGB")))


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb = load_rgb(tmp_path / "g.png")
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], gray)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = load_rgb(tmp_path / "deep.png")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 100, 255])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent (black underneath)
    rgba[1, 0] = (0, 0, 255, 128)  # half blue
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    assert abs(int(rgb[1, 0, 0]) - 127) <= 1 and rgb[1, 0, 2] == 255


def test_palette_and_cmyk(tmp_path):
    source = write_image(tmp_path / "s.png", (20, 10), seed=4)
    reference = np.asarray(Image.open(source).convert("RGB"))
    Image.open(source).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png").shape == (10, 20, 3)
    Image.open(source).convert("CMYK").save(tmp_path / "c.tif")
    cmyk = load_rgb(tmp_path / "c.tif")
    assert cmyk.shape == (10, 20, 3)
    assert np.abs(cmyk.astype(int) - reference.astype(int)).mean() < 3  # CMYK round trip


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 30, 3), dtype=np.uint8)
    array[:, :5] = 255  # a white band on the left
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "o.jpg", exif=exif, quality=100)
    rgb = load_rgb(tmp_path / "o.jpg")
    assert rgb.shape == (30, 10, 3)  # portrait once oriented
    assert rgb[:5].mean() > 200 and rgb[-5:].mean() < 50  # the band is now on top


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    rgb = load_rgb(tmp_path / "anim.gif")
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 50


@pytest.mark.parametrize("content,reason", [
    (b"", "cannot decode"), (b"not an image at all", "cannot decode"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode"),
])
def test_bad_files_raise_one_line_image_errors(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        load_rgb(path)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_an_image_error(tmp_path):
    path = write_image(tmp_path / "t.jpg", (64, 64), seed=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        load_rgb(path)


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", (100, 100), seed=6)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over it
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert str(caught.value) == "image too large: 100x100 is 10,000 pixels, over the limit of 1,000 (--max-pixels)"


def test_model_view_resizes_with_width_height_order():
    rgb = np.zeros((30, 80, 3), dtype=np.uint8)
    rgb[:, :40] = 255  # left half white
    view, box = model_view(rgb, (16, 24))
    assert view.shape == (16, 24, 3) and view.dtype == np.float32
    assert box == (0, 0, 80, 30)
    assert view[:, :10].min() == 255 and view[:, 14:].max() == 0


def test_model_view_centre_crop_box():
    rgb = np.zeros((300, 400, 3), dtype=np.uint8)
    view, box = model_view(rgb, (224, 224), crop=True)
    assert view.shape == (224, 224, 3)
    # shorter side 300 -> 256, so 224/256 of it is kept: a 262.5-pixel square in the centre
    x0, y0, x1, y1 = box
    assert (x1 - x0, y1 - y0) == (262, 262) or (x1 - x0, y1 - y0) == (263, 263)
    assert abs((x0 + x1) / 2 - 200) <= 1 and abs((y0 + y1) / 2 - 150) <= 1
