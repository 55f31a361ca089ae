"""Masks read as labels by one stated rule (files.images.read_mask), and every argument parsed
strictly: ASCII whole numbers and finite numbers only, a .npy reference checked from its
header, then for values a similarity cannot use; each bad value one line and exit 2."""

import math

import numpy as np
import pytest
from conftest import invoke_cli, write_image
from PIL import Image

from gradcam_cli.files.images import read_mask

# A disc on a 64x64 grid (demo-unet's output grid is its input's, 64x64): the cells inside, by hand.
YS, XS = np.mgrid[:64, :64]
DISC = (YS - 30) ** 2 + (XS - 35) ** 2 <= 11 ** 2
CELLS = int(DISC.sum())


def _rgba(folder):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere: by colour, the whole image
    rgba[..., 3] = np.where(DISC, 255, 0)  # transparent outside the disc
    path = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _la(folder):
    la = np.stack([np.full((64, 64), 128, np.uint8), np.where(DISC, 200, 0).astype(np.uint8)], axis=-1)
    path = folder / "la.png"
    Image.fromarray(la, "LA").save(path)
    return path


def _palette(folder):
    image = Image.fromarray(DISC.astype(np.uint8), "P")  # index 1 inside, 0 outside
    image.putpalette([255, 255, 255, 200, 0, 0] + [0, 0, 0] * 254)  # index 0 is white, and transparent
    path = folder / "palette.png"
    image.save(path, transparency=0)
    return path


def _grey(folder):
    path = folder / "grey.png"
    Image.fromarray(np.where(DISC, 255, 0).astype(np.uint8), "L").save(path)
    return path


def _label_16(folder):
    path = folder / "label16.png"
    Image.fromarray(DISC.astype(np.uint16)).save(path)  # label 1: 1/65535 of full scale
    assert path.read_bytes()[24] == 16 and Image.open(path).mode.startswith("I")  # IHDR's bit depth: 16
    return path


def _colour(folder):
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[DISC] = (0, 0, 7)  # dark blue is non-zero
    path = folder / "colour.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path


def _opaque_rgba(folder):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[DISC] = (255, 255, 255, 255)
    rgba[..., 3] = 255  # opaque everywhere: the alpha says nothing, the colour decides
    path = folder / "opaque.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


MASKS = {"rgba": _rgba, "la": _la, "palette": _palette, "grey": _grey, "label16": _label_16, "colour": _colour,
         "opaque_rgba": _opaque_rgba}


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_each_kind_of_mask_is_read_by_the_rule(tmp_path, kind):
    """The boolean mask equals the disc drawn, whatever the file's kind; through demo-unet, a
    segment target over it counts the disc's cells (before: RGBA, LA and the palette image counted
    all 4,096, the 16-bit label 1 covered no cell)."""
    from gradcam_cli import Explainer, load_model

    path = MASKS[kind](tmp_path)
    np.testing.assert_array_equal(read_mask(path), DISC)
    image = write_image(tmp_path / "image.png", (64, 64))
    maps = Explainer(load_model("demo-unet"), "gradcam", target=f"segment:circle:{path}").maps([image])
    assert maps.batch.details[0]["target_pixels"] == CELLS == 377


def test_eval_masks_follow_the_same_rule(tmp_path):
    from gradcam_cli.evaluate.annotations import read_mask as annotation

    image = write_image(tmp_path / "a.png", (64, 64))
    _rgba(tmp_path).rename(tmp_path / "a.mask.png")
    found = annotation(image, (64, 64, 3))
    np.testing.assert_array_equal(found.mask, DISC)
    assert found.box == (24, 19, 47, 42)


def test_the_rule_is_stated_in_the_help():
    run = invoke_cli("gradcam", "--help")
    text = "".join(run.stdout.split())  # Click wraps at spaces and hyphens: compared without them
    for stated in ("where it has transparency, its pixels that are not fully transparent (alpha > 0) are inside",
                   "a grey mask (8- or 16-bit) is inside where it is non-zero, a colour mask where any channel is"):
        assert "".join(stated.split()) in text


# --- arguments -----------------------------------------------------------------------------------

def _npy(folder, name, array=None, raw=None, header=None):
    path = folder / name
    if raw is not None:
        path.write_bytes(raw)
    elif header is not None:
        with open(path, "wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
            file.write(b"\x00" * 16)
    else:
        np.save(path, array, allow_pickle=True)
    return path


REFERENCES = [
    ("empty.npy", dict(raw=b""), "cannot read the reference vector {path!r}: an empty file, not a .npy array"),
    ("text.npy", dict(raw=b"not a numpy file at all"), "cannot read the reference vector {path!r}: not a .npy array"),
    ("str.npy", dict(array=np.array(["a", "b", "c", "d"])),
     "cannot read the reference vector {path!r}: values of type <U1: give real numbers (float, integer or bool)"),
    ("complex.npy", dict(array=np.ones(4, np.complex64)),
     "cannot read the reference vector {path!r}: values of type complex64: give real numbers"),
    ("object.npy", dict(array=np.array([1, None, 2, 3], dtype=object)),
     "cannot read the reference vector {path!r}: values of type object: give real numbers"),
    ("huge.npy", dict(header={"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)}),
     "cannot read the reference vector {path!r}: an array of shape (1000000000000,) (1,000,000,000,000 values), "
     "over the limit of 100,000,000"),
    ("nothing.npy", dict(array=np.zeros((0,), np.float32)),
     "cannot read the reference vector {path!r}: an array of shape (0,) holds no values"),
    ("cut.npy", dict(header={"descr": "<f8", "fortran_order": False, "shape": (4,)}),
     "cannot read the reference vector {path!r}: the file is cut short: its header gives 4 values, it holds 2"),
    ("nan.npy", dict(array=np.array([1.0, math.nan, 2.0, 3.0], np.float32)),
     "the reference {path!r} holds 1 value(s) that are not finite (NaN or infinity in float32): give finite numbers"),
    ("inf.npy", dict(array=np.array([1.0, 1e300, -1e300, 3.0])),
     "the reference {path!r} holds 2 value(s) that are not finite (NaN or infinity in float32): give finite numbers"),
    ("zero.npy", dict(array=np.zeros(4)),
     "the reference {path!r} is zero everywhere: a similarity to it is undefined"),
]


@pytest.mark.parametrize("name, content, message", REFERENCES, ids=[r[0] for r in REFERENCES])
def test_a_bad_npy_reference_is_one_line_before_any_image(tmp_path, name, content, message):
    path = _npy(tmp_path, name, **content)
    image = write_image(tmp_path / "a.png", (64, 64))
    run = invoke_cli(image, "-m", "demo-gap", "-o", tmp_path / "out", "--target", f"similar:{path}")
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.strip().startswith("Error: " + message.format(path=str(path))), run.stderr
    assert not (tmp_path / "out").exists()


def test_a_good_npy_reference_in_any_real_dtype_and_order_reads_as_its_values(tmp_path):
    from gradcam_cli.files.references import read_vector

    values = np.arange(6, dtype=">i2").reshape(2, 3)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    np.testing.assert_array_equal(read_vector(tmp_path / "f.npy"), [0, 1, 2, 3, 4, 5])
    np.save(tmp_path / "b.npy", np.array([True, False, True, True]))
    np.testing.assert_array_equal(read_vector(tmp_path / "b.npy"), [1, 0, 1, 1])


BAD_ARGUMENTS = [
    (["--target", "class:--1"], "--target class:--1: '--1' is not a class index: write an index in the digits 0-9, "
                                "or a class name (class targets are written class:N|NAME)"),
    (["--target", "class:²"], "--target class:²: '²' is not a class index"),
    (["--target", "class:٣"], "--target class:٣: '٣' is not a class index"),
    (["--class", "²"], "--class ²: not a class index: write an index in the digits 0-9, or a class name"),
    (["--class", "--1"], "--class --1: not a class index"),
    (["--target", "output:²"], "--target output:²: output targets are written output:INDEX[:decrease], INDEX a "
                               "unit's index in the digits 0-9"),
    (["--target", "output:-1"], "--target output:-1: output targets are written"),
    (["--target", "segment:²"], "--target segment:²: '²' is not a class index"),
    (["--target", "box:0,0,10,10:²"], "--target box:0,0,10,10:²: '²' is not a class index"),
    (["--target", "box:0,0,inf,inf"], "--target box:0,0,inf,inf: box targets are written box:X0,Y0,X1,Y1[:CLASS], the "
                                      "box's corners in the image's pixels, finite numbers in the digits 0-9, with "
                                      "X0 < X1 and Y0 < Y1"),
    (["--target", "box:nan,0,10,10"], "--target box:nan,0,10,10: box targets are written"),
    (["--target", "box:0,0,1e400,10"], "--target box:0,0,1e400,10: box targets are written"),
    (["--target", "box:0,0,１０,10"], "--target box:0,0,１０,10: box targets are written"),
]


@pytest.mark.parametrize("arguments, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_each_bad_target_or_class_is_one_line_and_exit_2(tmp_path, arguments, message):
    image = write_image(tmp_path / "a.png", (64, 64))
    run = invoke_cli(image, "-m", "demo-gap", "-o", tmp_path / "out", *arguments)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.strip().startswith("Error: " + message), run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["compare", "eval"])
def test_compare_and_eval_check_their_target_and_class_too(tmp_path, command):
    image = write_image(tmp_path / "a.png", (64, 64))
    for arguments, message in ((["--target", "class:²"], "Error: --target class:²: '²' is not a class index"),
                               (["--class", "²"], "Error: --class ²: not a class index")):
        run = invoke_cli(command, image, "-m", "demo-gap", "-o", tmp_path / "out", *arguments)
        assert run.returncode == 2 and run.stderr.strip().startswith(message), run.stderr


def test_the_library_refuses_a_unicode_index_as_a_gradcam_error():
    from gradcam_cli import Explainer, load_model
    from gradcam_cli.errors import ClassError, GradcamError
    from gradcam_cli.explain.targets import TargetError, parse

    with pytest.raises(TargetError):
        parse("class:²")
    explainer = Explainer(load_model("demo-gap"), "gradcam")
    with pytest.raises(ClassError) as caught:
        explainer.class_indices(["²"])
    assert isinstance(caught.value, GradcamError)
    assert str(caught.value) == "class '²' is not a class name of the model"
    assert parse("class:007").index == 7 and parse("box:1,2.5,3e1,+4").box == (1.0, 2.5, 30.0, 4.0)
