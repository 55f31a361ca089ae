"""IMAGE arguments: files, folders, globs, stdin; names under the output folder never collide."""

import io

from conftest import write_image
from gradcam_cli.files.inputs import collect
from gradcam_cli.files.outputs import output_path


def test_folder_is_recursive_and_mirrors_the_tree(tmp_path):
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "sub" / "deeper" / "b.jpg")
    (tmp_path / "in" / "notes.txt").write_text("hello")
    got = collect([str(tmp_path / "in")])
    assert [s.name for s in got.sources] == ["a.png", "sub/deeper/b.jpg"]
    assert [p.name for p in got.skipped] == ["notes.txt"]
    assert not got.missing


def test_same_stem_different_extension_do_not_overwrite(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "a.png")
    got = collect([str(tmp_path / "a.jpg"), str(tmp_path / "a.png")])
    paths = {output_path("out", s.name, "gradcam", "overlay") for s in got.sources}
    assert {p.name for p in paths} == {"a.jpg.gradcam.overlay.png", "a.png.gradcam.overlay.png"}


def test_same_file_name_in_two_folders_gets_distinct_names(tmp_path):
    write_image(tmp_path / "x" / "cat.png")
    write_image(tmp_path / "y" / "cat.png")
    got = collect([str(tmp_path / "x" / "cat.png"), str(tmp_path / "y" / "cat.png")])
    assert sorted(s.name for s in got.sources) == ["x/cat.png", "y/cat.png"]


def test_duplicates_are_processed_once(tmp_path):
    write_image(tmp_path / "d" / "a.png")
    got = collect([str(tmp_path / "d"), str(tmp_path / "d" / "a.png")])
    assert len(got.sources) == 1


def test_stdin_dash_and_globs(tmp_path):
    write_image(tmp_path / "g" / "one.png")
    write_image(tmp_path / "g" / "two.png")
    (tmp_path / "g" / "three.csv").write_text("1,2")
    got = collect(["-"], stdin=io.StringIO(f"{tmp_path / 'g' / 'one.png'}\n\n{tmp_path / 'g' / 'two.png'}\n"))
    assert [s.name for s in got.sources] == ["one.png", "two.png"]
    globbed = collect([str(tmp_path / "g" / "*")])
    assert sorted(s.name for s in globbed.sources) == ["one.png", "two.png"]
    assert [p.name for p in globbed.skipped] == ["three.csv"]


def test_missing_arguments_are_reported(tmp_path):
    got = collect([str(tmp_path / "nope.png"), str(tmp_path / "none*.png")])
    assert got.missing == [str(tmp_path / "nope.png"), str(tmp_path / "none*.png")]
    assert not got.sources


def test_a_file_named_directly_is_tried_whatever_its_extension(tmp_path):
    write_image(tmp_path / "photo.data", format="PNG")
    got = collect([str(tmp_path / "photo.data")])
    assert [s.name for s in got.sources] == ["photo.data"]
