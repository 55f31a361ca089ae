"""Bounded decoding (files/images.py's gate, files/headers.py): a file whose header claims more
pixels than --max-pixels is refused in one line naming the file and the limit, before any
decoder runs, on every route (inputs, masks, references, concept images, thumbnails, eval's
masks); a file Pillow refuses is never handed to OpenCV. Every file here is made by hand, byte
by byte, so that each header says exactly what the test says it does."""

import json
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from conftest import OFFLINE_ENV, invoke_cli, write_image
from PIL import Image

from gradcam_cli.errors import ImageError
from gradcam_cli.files.headers import read_header
from gradcam_cli.files.images import DEFAULT_MAX_PIXELS, load_rgb, read_mask

LIMIT = "89,478,485"


def _too_large(width, height, limit=LIMIT):
    return f"image too large: {width}x{height} is {width * height:,} pixels, over the limit of {limit} (--max-pixels)"


# --- the files, by hand -------------------------------------------------------------------------

def _png_chunk(kind, data, good=True):
    crc = zlib.crc32(kind + data) ^ (0 if good else 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width, height, corrupt=False, idat=None, colour=2):
    """A PNG of width x height (8-bit, RGB by default) whose IHDR checksum is right; `corrupt`:
    a tEXt chunk before the image data with a wrong checksum (what made Pillow fail before its
    size check); `idat`: the compressed rows (a few bytes of nothing by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"tEXt", b"Comment\x00made by hand", good=not corrupt)
            + _png_chunk(b"IDAT", zlib.compress(b"") if idat is None else idat) + _png_chunk(b"IEND", b""))


def _segment(marker, data):
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


def jpeg(width, height, corrupt=False):
    """SOI, JFIF, [a garbage Exif segment], a quantisation table, SOF0 (baseline, 3 components)
    of width x height, a scan header, a few bytes and EOI."""
    parts = [b"\xff\xd8", _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if corrupt:
        parts.append(_segment(0xE1, b"Exif\x00\x00XX\x00\x2a\xff\xff\xff\xff" + b"\x13" * 40))
    parts += [_segment(0xDB, b"\x00" + bytes(range(1, 65))),
              _segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"),
              _segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"), b"\x00" * 64, b"\xff\xd9"]
    return b"".join(parts)


def tiff(width, height, corrupt=False):
    """A little-endian TIFF whose one directory gives width x height, 8-bit grey, one strip;
    `corrupt`: an ImageDescription whose offset lies far past the end of the file."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, (width * height) & 0xFFFFFFFF)]
    if corrupt:
        entries.append((270, 2, 1000, 0xFFFFFF00))
    packed = b"".join(struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else
                      struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in sorted(entries))
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + packed + b"\x00" * 4


def webp(width, height, corrupt=False):
    """An extended WebP (VP8X) whose canvas is width x height, then a lossless chunk of 8 bytes;
    `corrupt`: that chunk says it is 4,000 bytes long."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    image = b"VP8L" + struct.pack("<I", 4000 if corrupt else 8) + b"\x2f" + b"\x00" * 7
    body = b"WEBP" + vp8x + image
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp(width, height, corrupt=False):
    """A BMP (BITMAPINFOHEADER, 24-bit) of width x height; `corrupt`: compression 99, which no
    BMP has."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 99 if corrupt else 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\x00" * 16


def gif(width, height, corrupt=False):
    """A GIF89a whose logical screen and first image are width x height; `corrupt`: a graphic
    control extension of 9 bytes (it has 4)."""
    parts = [b"GIF89a", struct.pack("<HHBBB", width, height, 0, 0, 0)]
    if corrupt:
        parts.append(b"\x21\xf9\x09" + b"\xee" * 9 + b"\x00")
    parts += [b"\x2c", struct.pack("<HHHHB", 0, 0, width, height, 0), b"\x02\x02\x4c\x01\x00", b"\x3b"]
    return b"".join(parts)


HUGE = {"png": (png, 10000, 10000), "jpg": (jpeg, 60000, 60000), "tif": (tiff, 50000, 50000),
        "webp": (webp, 16384, 16384), "bmp": (bmp, 30000, 30000), "gif": (gif, 65535, 65535)}


def _huge(folder, suffix, corrupt):
    make, width, height = HUGE[suffix]
    path = folder / f"huge{'-corrupt' if corrupt else ''}.{suffix}"
    path.write_bytes(make(width, height, corrupt))
    return path, width, height


# --- the gate -----------------------------------------------------------------------------------

def test_the_default_limit_is_pillows():
    from PIL import Image as PillowImage

    from gradcam_cli.cli.options import DEFAULT_MAX_PIXELS as CLI_DEFAULT

    assert DEFAULT_MAX_PIXELS == CLI_DEFAULT == 89_478_485
    assert PillowImage.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("corrupt", [False, True], ids=["whole", "corrupt"])
@pytest.mark.parametrize("suffix", sorted(HUGE))
def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path, suffix, corrupt):
    """Each format's header is read here (the size it claims), and the file refused in one
    line with the limit, in milliseconds: nothing was decoded. With a corrupt ancillary part,
    the same line: the size is read before anything else is."""
    path, width, height = _huge(tmp_path, suffix, corrupt)
    header = read_header(path)
    assert (header.width, header.height) == (width, height)
    started = time.perf_counter()
    for read in (load_rgb, read_mask):
        with pytest.raises(ImageError) as caught:
            read(path)
        assert str(caught.value) == _too_large(width, height)
    assert time.perf_counter() - started < 1.0


def test_a_png_pillow_refuses_for_a_bad_checksum_is_not_decoded_by_opencv(tmp_path):
    """The bypass: a PNG within the limit with a bad-checksum text chunk. Pillow cannot
    identify it; OpenCV (which ignores ancillary checksums) would decode it. The gate refuses."""
    path = tmp_path / "bad-crc.png"
    rows = b"".join(b"\x00" + bytes([200]) * 48 for _ in range(16))  # 16x16 RGB, filter 0
    path.write_bytes(png(16, 16, corrupt=True, idat=zlib.compress(rows)))
    import cv2

    assert cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED) is not None  # OpenCV would take it
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert str(caught.value) == "cannot decode: a broken PNG file (bad checksum in chunk 'tEXt')"
    path.write_bytes(png(16, 16, corrupt=False, idat=zlib.compress(rows)))  # the same file whole decodes
    assert load_rgb(path).shape == (16, 16, 3) and int(load_rgb(path)[0, 0, 0]) == 200


def test_opencv_decodes_only_what_pillow_cannot_identify_measured_within_the_limit(tmp_path, monkeypatch):
    """A Radiance HDR: Pillow cannot identify it, its header is read here, so OpenCV may decode
    it (its float values are then refused as not 8- or 16-bit); over the limit, OpenCV never
    sees it."""
    import cv2

    path = tmp_path / "x.hdr"
    cv2.imwrite(str(path), np.ones((20, 30, 3), np.float32))
    calls = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(ImageError, match="cannot decode"):
        load_rgb(path)
    assert calls == [1]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert str(caught.value) == _too_large(30, 20, "100") and calls == [1]


def _small_folder(folder, count=4):
    for i in range(count):
        write_image(folder / f"small{i}.png", (64, 64), seed=i)


def _peak_rss_mb(*args):
    """The peak resident memory (MB) of `gradcam ARGS` in a fresh process, and its result."""
    code = ("import resource, subprocess, sys, json\n"
            "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, run.returncode, "
            "run.stderr]))")
    env = dict(os.environ, **OFFLINE_ENV)
    done = subprocess.run([sys.executable, "-c", code, "gradcam", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    peak_kb, returncode, stderr = json.loads(done.stdout.strip().splitlines()[-1])
    return peak_kb / 1024, returncode, stderr


def test_a_folder_of_bombs_runs_in_the_memory_of_a_folder_of_small_images(tmp_path):
    """Four 10000x10000-class files (a real PNG of zero rows whose text chunk has a bad
    checksum, ~100 KB; JPEG, TIFF, GIF headers) beside one small image: each refused in one line
    naming it and the limit, the small one explained, and the peak memory within 300 MB of a run
    over small images alone (before the gate: gigabytes)."""
    bombs, small = tmp_path / "bombs", tmp_path / "small"
    bombs.mkdir()
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * 10000)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(10)) + compressor.flush()
    (bombs / "a.png").write_bytes(png(10000, 10000, corrupt=True, idat=idat))
    for suffix in ("jpg", "tif", "gif"):
        make, width, height = HUGE[suffix]
        (bombs / f"b.{suffix}").write_bytes(make(width, height, corrupt=True))
    write_image(bombs / "z.png", (64, 64), seed=9)
    _small_folder(small)
    started = time.perf_counter()
    bomb_peak, code, stderr = _peak_rss_mb(bombs, "-m", "demo-gap", "-o", tmp_path / "out1")
    seconds = time.perf_counter() - started
    small_peak, small_code, _ = _peak_rss_mb(small, "-m", "demo-gap", "-o", tmp_path / "out2")
    assert code == 1 and small_code == 0
    errors = sorted(line for line in stderr.splitlines() if line.startswith("error:"))
    assert errors == [f"error: {bombs / 'a.png'}: {_too_large(10000, 10000)}",
                      f"error: {bombs / 'b.gif'}: {_too_large(65535, 65535)}",
                      f"error: {bombs / 'b.jpg'}: {_too_large(60000, 60000)}",
                      f"error: {bombs / 'b.tif'}: {_too_large(50000, 50000)}"]
    assert (tmp_path / "out1" / "z.png.gradcam.overlay.png").is_file()
    assert bomb_peak < small_peak + 300, (bomb_peak, small_peak)
    assert seconds < 120


def test_max_pixels_refuses_a_64x64_image_and_the_folder_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # the option sets it: restored after
    write_image(tmp_path / "in" / "big.png", (64, 64), seed=1)
    write_image(tmp_path / "in" / "tiny.png", (10, 10), seed=2)
    run = invoke_cli(tmp_path / "in", "-m", "demo-gap", "-o", tmp_path / "out", "--max-pixels", "100", "--json")
    assert run.returncode == 1
    assert run.stderr.splitlines()[0] == f"error: {tmp_path / 'in' / 'big.png'}: {_too_large(64, 64, '100')}"
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["input"].rsplit("/", 1)[-1] for r in records] == ["big.png", "tiny.png"]
    assert records[0]["error"] == _too_large(64, 64, "100") and "maps" in records[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.png.gradcam.heatmap.png",
                                                                    "tiny.png.gradcam.overlay.png",
                                                                    "tiny.png.gradcam.record.json"]


@pytest.mark.parametrize("value", ["0", "-5", "²", "1e9", "١٠٠", "many"])
def test_max_pixels_takes_ascii_whole_numbers_only(tmp_path, value):
    write_image(tmp_path / "a.png", (8, 8))
    run = invoke_cli(tmp_path / "a.png", "-m", "demo-gap", "-o", tmp_path / "out", "--max-pixels", value)
    assert run.returncode == 2
    assert run.stderr.strip() == f"Error: --max-pixels {value}: give a whole number of pixels of at least 1, in " \
                                 "the digits 0-9"


@pytest.mark.parametrize("command", ["gradcam", "cam", "guided", "dilated", "compare", "eval", "concepts", "report"])
def test_every_command_that_reads_images_takes_max_pixels(command):
    run = invoke_cli(command, "--help")
    assert run.returncode == 0 and "--max-pixels N" in run.stdout


# --- every route through the gate --------------------------------------------------------------

def test_a_mask_goes_through_the_gate(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    path, width, height = _huge(tmp_path, "png", corrupt=True)
    image = write_image(tmp_path / "a.png", (64, 64))
    run = invoke_cli(image, "-m", "demo-unet", "-o", tmp_path / "out", "--target", f"segment:circle:{path}")
    assert run.returncode == 2
    assert run.stderr.strip() == f"Error: cannot read the mask {str(path)!r}: {_too_large(width, height)}"
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(mask)
    run = invoke_cli(image, "-m", "demo-unet", "-o", tmp_path / "out", "--target", f"segment:circle:{mask}",
                     "--max-pixels", "4000")
    assert run.returncode == 2
    assert run.stderr.strip() == f"Error: cannot read the mask {str(mask)!r}: {_too_large(64, 64, '4,000')}"


def test_a_reference_image_goes_through_the_gate(tmp_path):
    from gradcam_cli import Explainer, load_model

    path, width, height = _huge(tmp_path, "gif", corrupt=False)
    with pytest.raises(ValueError) as caught:
        Explainer(load_model("demo-gap"), "gradcam", target=f"similar:{path}").build()
    assert str(caught.value) == f"cannot read the reference image {str(path)!r}: {_too_large(width, height)}"


def test_report_thumbnails_go_through_the_gate(tmp_path):
    from gradcam_cli.report.thumbnails import make_thumbnails

    path, width, height = _huge(tmp_path, "webp", corrupt=True)
    good = write_image(tmp_path / "good.png", (64, 64))
    made, written = make_thumbnails([str(path), str(good)], tmp_path / "thumbs", 128)
    assert made[str(path)] == (None, f"cannot read {path.name}: {_too_large(width, height)}")
    assert made[str(good)][0] is not None and written == 1


def test_concept_images_go_through_the_gate(tmp_path):
    from gradcam_cli import Explainer, load_model
    from gradcam_cli.explain.concepts import factorize

    path, width, height = _huge(tmp_path, "bmp", corrupt=True)
    images = [write_image(tmp_path / f"{i}.png", (64, 64), seed=i) for i in range(2)]
    failed = []
    found = factorize(Explainer(load_model("demo-gap"), "eigencam"), [images[0], path, images[1]], k=2,
                      on_failure=lambda index, reason: failed.append((index, reason)))
    assert failed == [(1, _too_large(width, height))]
    assert [image.index for image in found.images] == [0, 2]


def test_eval_masks_go_through_the_gate(tmp_path):
    from gradcam_cli.evaluate.annotations import read_mask as annotation

    image = write_image(tmp_path / "a.png", (64, 64))
    (tmp_path / "a.mask.png").write_bytes(png(10000, 10000, corrupt=True))
    with pytest.raises(ImageError) as caught:
        annotation(image, (64, 64, 3))
    assert str(caught.value) == _too_large(10000, 10000)


def test_no_decoder_is_called_outside_files():
    """Every cv2.imread/imdecode, Image.open and np.load of the package lives in files/."""
    import re
    from pathlib import Path

    import gradcam_cli

    root = Path(gradcam_cli.__file__).parent
    calls = re.compile(r"\b(cv2\.imread|cv2\.imdecode|Image\.open|np\.load|numpy\.load)\(")
    found = [f"{path.relative_to(root)}:{n}" for path in root.rglob("*.py") if path.parent.name != "files"
             for n, line in enumerate(path.read_text().splitlines(), 1) if calls.search(line)]
    assert found == []
    for module in ("explain/targets.py", "explain/concepts.py", "explain/target_inputs.py"):
        assert "gradcam_cli.files" not in re.sub(r'"""[\s\S]*?"""|#.*', "", (root / module).read_text())
