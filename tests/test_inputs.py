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


# --- symbolic links: one visited-folder rule for folders and globs ----------------------------

def _looped_tree(tmp_path):
    """p/loopdir/{a.png, sub/b.png, self -> ., up -> .., linked -> ../real}, p/real/c.png, and
    a mutual loop p/x.png -> p/y.png -> p/x.png."""
    p = tmp_path / "p"
    write_image(p / "loopdir" / "a.png")
    write_image(p / "loopdir" / "sub" / "b.png")
    write_image(p / "real" / "c.png")
    (p / "loopdir" / "self").symlink_to(".")
    (p / "loopdir" / "up").symlink_to("..")
    (p / "loopdir" / "linked").symlink_to("../real")
    (p / "x.png").symlink_to("y.png")
    (p / "y.png").symlink_to("x.png")
    return p


def _collect_in_a_subprocess(arguments, cwd, **keywords):
    """collect() run in a fresh interpreter with a 60 s limit, so a walk that loops fails the
    test instead of hanging it: (names, broken, loops) as relative paths."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from gradcam_cli.files.inputs import collect; "
            f"c = collect({arguments!r}, **{keywords!r}); "
            "print(json.dumps([[s.name for s in c.sources], [str(p) for p in c.broken], "
            "[str(p) for p in c.loops], [str(p) for p in c.excluded]]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_recursive_glob_over_link_loops_ends_with_each_file_once(tmp_path):
    _looped_tree(tmp_path)
    names, broken, loops, _ = _collect_in_a_subprocess(["p/loopdir/**"], tmp_path)
    # up -> .. reaches p/real and p/x.png, y.png (the loop) through the followed link
    assert sorted(names) == ["a.png", "b.png", "c.png"]
    assert sorted(broken) == sorted(loops) == ["p/loopdir/up/x.png", "p/loopdir/up/y.png"]
    names, _, _, _ = _collect_in_a_subprocess(["p/**/*.png"], tmp_path)
    assert sorted(names) == ["a.png", "b.png", "c.png"]


def test_a_folder_follows_linked_folders_once(tmp_path):
    _looped_tree(tmp_path)
    got = collect([str(tmp_path / "p" / "loopdir")])
    # linked -> ../real is entered (once), self and up lead to folders already entered or above
    assert sorted(s.name for s in got.sources) == ["a.png", "linked/c.png", "sub/b.png"]
    # up -> .. is entered (p itself was not), so p's mutual link loop is found, and called a loop
    loop = tmp_path / "p" / "loopdir" / "up" / "x.png"
    assert loop in got.loops and got.link_problem(loop) == "symbolic link loop (its target leads back to itself)"


def test_a_mutual_link_loop_is_a_loop_and_a_dangling_link_is_broken(tmp_path):
    p = _looped_tree(tmp_path)
    (p / "gone.png").symlink_to(tmp_path / "nowhere.png")
    got = collect([str(p / "x.png"), str(p / "gone.png")])
    assert got.broken == [p / "x.png", p / "gone.png"] and got.loops == [p / "x.png"] and got.failures == 2
    assert got.link_problem(p / "gone.png") == "broken symbolic link (its target does not exist)"


# --- earlier outputs in the input folder ------------------------------------------------------

def test_a_file_named_as_an_output_is_one_only_when_its_image_can_have_made_it(tmp_path):
    folder = tmp_path / "f"
    write_image(folder / "t.png.gradcam.heatmap.png", seed=1)  # a user's image, nothing to be made from
    write_image(folder / "u.png", seed=2)
    write_image(folder / "u.png.gradcam.class3.overlay.png", seed=3)  # an output of u.png (with a tag)
    got = collect([str(folder)], output_dir=folder)
    assert [s.name for s in got.sources] == ["t.png.gradcam.heatmap.png", "u.png"]
    assert got.excluded == [folder / "u.png.gradcam.class3.overlay.png"]
    write_image(folder / "t.png", seed=4)  # now t.png.gradcam.heatmap.png can be its heatmap
    again = collect([str(folder)], output_dir=folder)
    assert [s.name for s in again.sources] == ["t.png", "u.png"]
    assert sorted(p.name for p in again.excluded) == ["t.png.gradcam.heatmap.png", "u.png.gradcam.class3.overlay.png"]


def test_an_output_of_a_globbed_image_is_recognised_by_its_output_name(tmp_path):
    folder = tmp_path / "f"
    write_image(folder / "sub" / "v.png", seed=1)
    write_image(folder / "v.png.gradcam.overlay.png", seed=2)  # a glob names sub/v.png 'v.png': its output
    write_image(folder / "w.png.gradcam.overlay.png", seed=3)  # no w.png anywhere: an input
    got = collect([str(folder / "**" / "*.png")], output_dir=folder)
    assert sorted(s.name for s in got.sources) == ["v.png", "w.png.gradcam.overlay.png"]
    assert got.excluded == [folder / "v.png.gradcam.overlay.png"]


def test_the_command_on_a_quoted_recursive_glob_over_link_loops_ends(tmp_path):
    import os
    import subprocess

    from conftest import OFFLINE_ENV

    _looped_tree(tmp_path)
    result = subprocess.run(["gradcam", "p/loopdir/**", "--model", "demo-gap", "-o", "out", "-q"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=dict(os.environ, **OFFLINE_ENV))
    assert result.returncode == 1  # the two links of the loop are failed inputs
    assert result.stderr.splitlines() == [
        f"error: p/loopdir/up/{name}.png: symbolic link loop (its target leads back to itself)" for name in "xy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{name}.png.gradcam.{kind}" for name in "abc" for kind in ("heatmap.png", "overlay.png", "record.json")]
