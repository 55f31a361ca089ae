"""Turn the command line's IMAGE arguments into a list of image files.

Arguments may be files, folders (searched recursively), shell globs the shell did not expand,
or `-` to read more arguments from standard input, one per line. Each file keeps the name it
will have under the output folder: its path relative to the folder it was found in, or its
file name when it was given directly, so that a folder tree is mirrored.
"""

import glob
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MASK_SUFFIX = ".mask.png"  # an image's object mask: NAME.mask.png beside NAME.ext (eval, compare)


def is_mask(path):
    return Path(path).name.endswith(MASK_SUFFIX)


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
    masks: list = field(default_factory=list)  # NAME.mask.png files in folders (not inputs)
    excluded: list = field(default_factory=list)  # files in the output folder (earlier outputs)

    @property
    def failures(self):
        """Arguments and links that name no file: each is a failed input."""
        return len(self.missing) + len(self.broken)


def _read_stdin_arguments(stdin):
    return [line.strip() for line in stdin.read().splitlines() if line.strip()]


def _expand(argument):
    """An argument as (root, [paths]); root is the folder names are taken relative to."""
    path = Path(argument)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        return path, files
    if path.exists():
        return path.parent, [path]
    if glob.has_magic(argument):
        matched = sorted(Path(p) for p in glob.glob(argument, recursive=True))
        files = []
        for m in matched:
            files.extend(sorted(p for p in m.rglob("*") if p.is_file()) if m.is_dir() else [m])
        return None, files
    return None, None


def _inside(path, folder):
    try:
        Path(os.path.realpath(path)).relative_to(folder)
        return True
    except ValueError:
        return False


def _earlier_output(path, root, output_dir):
    """Whether `path`, found in the folder `root`, is an output of an earlier run: any file in
    the output folder when that lies inside `root`; when the output folder is `root` itself (or
    holds it), only files named as outputs are."""
    if output_dir is None or not _inside(path, output_dir):
        return False
    if root is not None and not _inside(root, output_dir):
        return True
    from gradcam_cli.files.outputs import is_output_name

    return is_output_name(Path(path).name)


def collect(arguments, stdin=None, output_dir=None, masks=False, exclude=None, shard=None):
    """Expand IMAGE arguments into a `Collected` (sources, skipped non-images, missing, broken
    links). In folders and globs, masks (NAME.mask.png) are set aside unless `masks`, and the
    files of `output_dir` (a run's own outputs) are left out, so a second run does not explain
    the first one's pictures. Then the sources `exclude(path)` names are dropped, and `shard`
    (K, N) keeps shard K of N."""
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

    seen = set()
    for argument in expanded:
        if Path(argument).is_symlink() and not Path(argument).exists():
            collected.broken.append(Path(argument))
            continue
        root, files = _expand(argument)
        if files is None or (not files and not Path(argument).is_dir()):
            collected.missing.append(argument)
            continue
        named_directly = Path(argument).is_file()
        for path in files:
            if not named_directly:
                if path.is_symlink() and not path.exists():
                    collected.broken.append(path)
                    continue
                if not path.is_file():
                    continue
                if _earlier_output(path, root, output_dir):
                    collected.excluded.append(path)
                    continue
                if not masks and is_mask(path):
                    collected.masks.append(path)
                    continue
            # A file named directly is always tried (the decoder gives the real reason if it is
            # not an image); in folders and globs, other files are skipped and counted.
            if not named_directly and path.suffix.lower() not in IMAGE_SUFFIXES:
                collected.skipped.append(path)
                continue
            key = os.path.realpath(path)
            if key in seen:
                continue
            seen.add(key)
            name = path.relative_to(root).as_posix() if root is not None else path.name
            collected.sources.append(Source(path=path, name=name))
    collected.sources = _disambiguate(collected.sources)
    if exclude is not None:
        collected.sources = [s for s in collected.sources if not exclude(s.path)]
    if shard is not None:
        collected.sources = in_shard(collected.sources, *shard)
    return collected


def _disambiguate(sources):
    """Give sources that would share an output name longer names, so none overwrites another."""
    by_name = {}
    for source in sources:
        by_name.setdefault(source.name, []).append(source)
    if all(len(group) == 1 for group in by_name.values()):
        return sources
    renamed = {}
    for name, group in by_name.items():
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
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"expected K/N, such as 2/8. Received: {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"expected K/N with 1 <= K <= N. Received: {text!r}")
    return k, n


def in_shard(sources, k, n):
    """The sources of shard k of n (1-based): a deterministic share chosen by a checksum of each
    source's output name, so N jobs given the same arguments split the work with no coordination,
    whatever order they list the files in, and adding files does not move the others."""
    return [s for s in sources if zlib.crc32(s.name.encode("utf-8")) % n == k - 1]
