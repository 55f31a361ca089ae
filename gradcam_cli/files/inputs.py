"""Turn the command line's IMAGE arguments into a list of image files.

Arguments may be files, folders (searched recursively), shell globs the shell did not expand,
or `-` to read more arguments from standard input, one per line. Each file keeps the name it
will have under the output folder: its path relative to the folder it was found in, or its
file name when it was given directly, so that a folder tree is mirrored.

Folders and globs are walked by one rule: symbolic links to folders are followed, and each real
folder is entered once (a set of the real paths visited, as `find -L` would with loop detection),
so a linked folder is read once, a link back up the tree (`ln -s . self`) adds nothing, and no
walk loops. A glob's `**` matches folders by the same walk (Python's glob.glob follows such links
for ever). A link whose target does not exist is "broken"; a link that resolves to itself through
other links (a -> b, b -> a) is a "loop": both are failed inputs.

With `volumes` (a method command, before it knows whether its model takes images or volumes),
folders and globs also give volume files (.nii, .nii.gz, .npy, .npz: files.volumes.VOLUME_SUFFIXES)
and DICOM series folders (a folder with a DICOM file directly in it: one input, its files not
walked, its subfolders walked), and video clips (.mp4, .avi, .mov, .webm), listed in
`Collected.volumes` too; `Collected.for_model` then keeps what the model takes. A folder of numbered
frames named directly, holding no other images, is also noted (`Collected.clip_folders`): for a
video model it is one clip, for an image model its frames are images. Found inside a folder that
is walked, such a folder stays images: one rule (a folder named directly is the clip) leaves no
doubt which folders are clips. A file or folder named directly is always an input, and the run says in one
line when it is not what the model takes. The tool's outputs (NAME.METHOD.raw.npy...) are never
inputs: in the output folder they are left out by the rule above, and a .npy named as an output
is never taken from a folder.
"""

import errno
import fnmatch
import glob
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from gradcam_cli.files.names import IMAGE_SUFFIXES, clip_suffix, is_mask
from gradcam_cli.numbers import wholes


@dataclass(frozen=True)
class Source:
    path: Path  # where to read the image
    name: str  # its relative name under the output folder, extension kept ("sub/cat.jpg")


@dataclass
class Collected:
    sources: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # files in folders that are not images
    missing: list = field(default_factory=list)  # arguments that name nothing
    broken: list = field(default_factory=list)  # symbolic links to nothing, found in folders or named
    loops: list = field(default_factory=list)  # those of `broken` that are symbolic link loops
    masks: list = field(default_factory=list)  # NAME.mask.png files in folders (not inputs)
    excluded: list = field(default_factory=list)  # files in the output folder (earlier outputs)
    volumes: list = field(default_factory=list)  # with `volumes`: the sources found in folders and globs that are
    # volumes (volume files, DICOM series folders, video clips); those named directly are not listed
    clip_folders: list = field(default_factory=list)  # with `volumes`: folders named directly that are clips,
    # [(Source of the folder, [the Sources of its frames])]

    def for_model(self, takes_volumes, clips=False):
        """What a model takes, of what was found: for a model of images, the volumes and clips found
        in folders and globs move to `skipped` (returned, the others kept); a model of volumes keeps
        everything (an image among them is refused in one line when read). For a video model
        (`clips`), each folder of numbered frames named directly (`clip_folders`) is one input, a
        clip, in place of its frames. Returns the sources moved to `skipped`."""
        if clips:
            for folder, frames in self.clip_folders:
                gone = {id(source) for source in frames}
                at = next((i for i, source in enumerate(self.sources) if id(source) in gone), len(self.sources))
                kept = [source for source in self.sources[:at] if id(source) not in gone]
                self.sources = kept + [folder] + [s for s in self.sources[at:] if id(s) not in gone]
        if takes_volumes or not self.volumes:
            return []
        moved = {id(source) for source in self.volumes}
        dropped = [source for source in self.sources if id(source) in moved]
        self.sources = [source for source in self.sources if id(source) not in moved]
        self.skipped += [source.path for source in dropped]
        self.volumes = []
        return dropped

    @property
    def failures(self):
        """Arguments and links that name no file: each is a failed input."""
        return len(self.missing) + len(self.broken)

    def link_problem(self, path):
        """Why the link `path` (one of `broken`) names no file, in words."""
        if path in self.loops:
            return "symbolic link loop (its target leads back to itself)"
        return "broken symbolic link (its target does not exist)"


LOOP, BROKEN = "loop", "broken"


def _link_problem(path):
    """LOOP or BROKEN for a symbolic link that names no file, else None."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as error:
        return LOOP if error.errno == errno.ELOOP else BROKEN
    return None


def _read_stdin_arguments(stdin):
    return [line.strip() for line in stdin.read().splitlines() if line.strip()]


def _known_suffix(name):
    """Whether a file name ends as an image's or a volume file's (not a DICOM slice: those folders
    are not read for the DICM mark)."""
    from gradcam_cli.files.volumes import VOLUME_SUFFIXES

    return name.lower().endswith(IMAGE_SUFFIXES + VOLUME_SUFFIXES)


def _series(folder):
    """Whether `folder` is a DICOM series (files.volumes.is_volume: a DICOM file directly in it)."""
    from gradcam_cli.files.dicom import holds_dicom

    return holds_dicom(folder)


def _walk(folder, visited, volumes=False):
    """Every file and link to a non-folder under `folder`, following links to folders but
    entering each real folder once (`visited`: the real paths entered, updated). With `volumes`,
    a DICOM series folder is listed itself, in place of its files."""
    real = os.path.realpath(folder)
    if real in visited:
        return []
    visited.add(real)
    found = []
    for here, folders, files in os.walk(folder, followlinks=True):
        if volumes and any(not _known_suffix(name) for name in files) and _series(here):
            found.append(Path(here))
            files = []
        kept = []
        for name in sorted(folders):  # sorted: which link names a folder does not depend on listing order
            real = os.path.realpath(os.path.join(here, name))
            if real not in visited:
                visited.add(real)
                kept.append(name)
        folders[:] = kept
        found.extend(Path(here) / name for name in files)
    return found


def _hidden(name):
    return name.startswith(".")


def _folders_below(folder):
    """`folder` and every folder under it that glob's `**` matches (not hidden ones), each real
    folder once."""
    visited = {os.path.realpath(folder or ".")}
    found = [folder]
    for here, folders, _ in os.walk(folder or ".", followlinks=True):
        kept = []
        for name in sorted(folders):
            real = os.path.realpath(os.path.join(here, name))
            if not _hidden(name) and real not in visited:
                visited.add(real)
                kept.append(name)
        folders[:] = kept
        relative = os.path.relpath(here, folder or ".")
        found.extend(os.path.join(folder, relative, name) if relative != "." else os.path.join(folder, name)
                     for name in kept)
    return found


def _glob(pattern):
    """The paths a shell glob matches, as glob.glob(recursive=True) gives them but with `**`
    walked by the visited-folder rule; a trailing `**` matches the folder it is in (whose files
    are all taken)."""
    anchor = os.sep if os.path.isabs(pattern) else ""
    parts = [part for part in pattern.split(os.sep) if part]
    matched = [anchor]
    for index, part in enumerate(parts):
        found = []
        for here in matched:
            if part == "**":
                found.extend([here] if index == len(parts) - 1 else _folders_below(here))
            elif glob.has_magic(part):
                try:
                    names = os.listdir(here or ".")
                except OSError:
                    continue
                found.extend(os.path.join(here, name) for name in sorted(names)
                             if fnmatch.fnmatchcase(name, part) and (_hidden(part) or not _hidden(name)))
            elif os.path.lexists(os.path.join(here, part)):
                found.append(os.path.join(here, part))
        matched = found
    return [m or "." for m in matched]


def _expand(argument, volumes=False):
    """An argument as (root, [paths]); root is the folder names are taken relative to. With
    `volumes`, a DICOM series folder named directly is itself the one path."""
    path = Path(argument)
    if path.is_dir():
        if volumes and _series(path):
            return path.parent, [path]
        return path, sorted(_walk(path, set(), volumes))
    if path.exists():
        return path.parent, [path]
    if glob.has_magic(argument):
        visited = set()
        files = []
        for m in sorted(Path(p) for p in _glob(argument)):
            files.extend(sorted(_walk(m, visited, volumes)) if m.is_dir() else [m])
        return None, files
    return None, None


def _inside(path, folder):
    try:
        Path(os.path.realpath(path)).relative_to(folder)
        return True
    except ValueError:
        return False


def _earlier_output(path, root, output_dir):
    """Whether `path`, found in the folder `root`, is an output of an earlier run: True for any
    file in the output folder when that lies inside `root`; when the output folder is `root`
    itself (or holds it), MAYBE for files named as outputs (`_made_from` decides), else False."""
    if output_dir is None or not _inside(path, output_dir):
        return False
    if root is not None and not _inside(root, output_dir):
        return True
    from gradcam_cli.files.outputs import is_output_name

    return MAYBE if is_output_name(Path(path).name) else False


MAYBE = "maybe"


def _made_from(path, output_dir, names):
    """Whether the file `path` in the output folder, named as an output (NAME.METHOD[.TAG].KIND.png
    and the like), can be one: the image NAME it would have been made from is beside it, or NAME
    is the output name of an input of this run (`names`). Otherwise it is a user's image that
    only looks like an output."""
    relative = Path(os.path.realpath(path)).relative_to(output_dir)
    parts = relative.name.split(".")
    for end in range(1, len(parts) - 1):
        stem = ".".join(parts[:end])
        if (relative.parent / stem).as_posix() in names or os.path.isfile(Path(path).parent / stem):
            return True
    return False


def _volume_file(path):
    """A volume file's name, or a video clip's (files.names.CLIP_SUFFIXES)."""
    from gradcam_cli.files.volumes import volume_suffix

    return volume_suffix(path) is not None or clip_suffix(path) is not None


def _frame_folder(folder, files):
    """Whether `folder`, named directly, is a clip for a video model: it holds numbered frames
    (files.clips.numbered_frames) and the images found in it (`files`, walked) are exactly those
    frames, directly in it; a folder with other images, or images in subfolders, is not (it stays a
    folder of images, each its own input)."""
    from gradcam_cli.files.clips import ClipError, numbered_frames

    try:
        frames = {name for _, name in numbered_frames(folder)}
    except (OSError, ClipError):
        return False
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES and not is_mask(path)]
    return bool(frames) and all(path.parent == Path(folder) and path.name in frames for path in images)


def collect(arguments, stdin=None, output_dir=None, masks=False, exclude=None, shard=None, volumes=False):
    """Expand IMAGE arguments into a `Collected` (sources, skipped non-images, missing, broken
    links and link loops). In folders and globs, masks (NAME.mask.png) are set aside unless
    `masks`, and earlier outputs in `output_dir` are left out, so a second run does not explain
    the first one's pictures: every file of the output folder when it lies inside the input
    folder, else (the output folder is the input folder) the files named as outputs that can be
    one (`_made_from`). Then the sources `exclude(path)` names are dropped, and `shard` (K, N)
    keeps shard K of N. `volumes`: folders and globs give volumes too (the module's docstring)."""
    if output_dir is not None:
        output_dir = Path(os.path.realpath(output_dir))
    collected = Collected()
    expanded = []
    for argument in arguments:
        if argument == "-":
            if stdin is None:
                continue
            expanded.extend(_read_stdin_arguments(stdin))
        else:
            expanded.append(argument)

    def link_failed(path):
        problem = _link_problem(path)
        if problem is not None:
            collected.broken.append(path)
            if problem == LOOP:
                collected.loops.append(path)
        return problem is not None

    seen = set()
    admitted = []  # (Source, whether it may be an earlier output)
    frame_folders = []  # (folder, its frames' real paths) of the folders named directly that are clips
    for argument in expanded:
        if link_failed(Path(argument)):
            continue
        root, files = _expand(argument, volumes)
        if volumes and files and Path(argument).is_dir() and _frame_folder(argument, files):
            frame_folders.append((Path(argument), {os.path.realpath(p) for p in files
                                                   if p.suffix.lower() in IMAGE_SUFFIXES}))
        if files is None or (not files and not Path(argument).is_dir()):
            collected.missing.append(argument)
            continue
        named_directly = Path(argument).is_file() or files == [Path(argument)]
        for path in files:
            earlier = False
            series = volumes and path.is_dir()  # only a DICOM series folder is listed among files
            if not named_directly:
                if link_failed(path) or not (path.is_file() or series):
                    continue
                earlier = _earlier_output(path, root, output_dir)
                if earlier is True:
                    collected.excluded.append(path)
                    continue
                if not masks and is_mask(path):
                    collected.masks.append(path)
                    continue
            # A file named directly is always tried (the decoder gives the real reason if it is
            # not an image); in folders and globs, other files are skipped and counted.
            volume = series or (volumes and _volume_file(path))
            if not named_directly and not earlier and path.suffix.lower() not in IMAGE_SUFFIXES and not volume:
                collected.skipped.append(path)
                continue
            if volume and not named_directly and path.suffix.lower() == ".npy" and _output_named(path):
                collected.skipped.append(path)  # an output's array (NAME.METHOD.raw.npy) is never an input
                continue
            key = os.path.realpath(path)
            if key in seen:
                continue
            seen.add(key)
            name = path.relative_to(root).as_posix() if root is not None else path.name
            admitted.append((Source(path=path, name=name), earlier == MAYBE, volume and not named_directly))
    names = {s.name for s in _disambiguate([source for source, maybe, _ in admitted if not maybe])}
    walked_volumes = set()
    for source, maybe, volume in admitted:
        if maybe and _made_from(source.path, output_dir, names):
            collected.excluded.append(source.path)
        elif maybe and source.path.suffix.lower() not in IMAGE_SUFFIXES and not (volume and _nifti(source.path)):
            collected.skipped.append(source.path)
        else:
            collected.sources.append(source)
            if volume:
                walked_volumes.add(os.path.realpath(source.path))
    collected.sources = _disambiguate(collected.sources)
    if exclude is not None:
        collected.sources = [s for s in collected.sources if not exclude(s.path)]
    if shard is not None:
        collected.sources = in_shard(collected.sources, *shard)
    collected.volumes = [s for s in collected.sources if os.path.realpath(s.path) in walked_volumes]
    for folder, frames in frame_folders:
        collected.clip_folders.append((Source(path=folder, name=Path(os.path.abspath(folder)).name),
                                       [s for s in collected.sources if os.path.realpath(s.path) in frames]))
    return collected


def _output_named(path):
    from gradcam_cli.files.outputs import is_output_name

    return is_output_name(Path(path).name)


def _nifti(path):
    """A NIfTI file's name (a user's scan in the output folder may look like an output's name: taken
    unless an earlier run made it, `_made_from`)."""
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def _disambiguate(sources):
    """Give sources that would share an output name longer names, so none overwrites another."""
    by_name = {}
    for source in sources:
        by_name.setdefault(source.name, []).append(source)
    if all(len(group) == 1 for group in by_name.values()):
        return sources
    renamed = {}
    for group in by_name.values():
        if len(group) == 1:
            continue
        absolute = [Path(os.path.abspath(s.path)) for s in group]
        common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
        for source, path in zip(group, absolute):
            renamed[id(source)] = path.relative_to(common).as_posix()
    result = [Source(s.path, renamed.get(id(s), s.name)) for s in sources]
    names = [s.name for s in result]
    if len(set(names)) != len(names):  # a renamed one now meets an existing name: number them
        counts = {}
        unique = []
        for s in result:
            counts[s.name] = counts.get(s.name, 0) + 1
            suffix = "" if counts[s.name] == 1 else f"~{counts[s.name]}"
            unique.append(Source(s.path, s.name + suffix))
        result = unique
    return result


def parse_shard(text):
    """'K/N' -> (K, N) with 1 <= K <= N; ValueError quoting the text otherwise."""
    try:
        k, n = wholes(text, "/")  # ASCII digits only: int() would take ' 2', '2_0', other scripts' digits
    except ValueError:
        raise ValueError(f"expected K/N in the digits 0-9, such as 2/8. Received: {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"expected K/N with 1 <= K <= N. Received: {text!r}")
    return k, n


def in_shard(sources, k, n):
    """The sources of shard k of n (1-based): a deterministic share chosen by a checksum of each
    source's output name, so N jobs given the same arguments split the work with no coordination,
    whatever order they list the files in, and adding files does not move the others."""
    return [s for s in sources if zlib.crc32(s.name.encode("utf-8")) % n == k - 1]
