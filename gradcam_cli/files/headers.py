"""Image sizes read from file headers, before any decoder runs.

files/images.py checks the pixel count of every file against its limit before a decoder may
allocate anything. Pillow's `Image.open` reads the header of the formats Pillow knows; this
module reads the headers of the formats the OpenCV fallback takes (PNG, JPEG, BMP, GIF, TIFF,
WebP, the PNM family and PFM, Radiance HDR, Sun raster), so that a file Pillow refuses is still
measured, and says whether the structure read on the way is whole. Only headers are read: a
few bytes, and for PNG the chunks before the first image data (their checksums checked, read
in pieces, at most HEADER_BYTES of them). No pixel is decoded here.

Each reader returns a Header whose width and height are what a decoder of that format would
allocate for the first frame (a GIF's first frame may reach past its logical screen: the
larger extent counts), or None where the header does not say (a JPEG whose height comes later,
in a DNL segment). `problem` names a broken structure (a bad checksum, a truncated header).
"""

import re
import struct
import zlib
from dataclasses import dataclass

# The most bytes of a PNG's chunks before its image data that are read to check their checksums.
HEADER_BYTES = 16 << 20
# The most segments, blocks or entries walked in a header: past it, the header is called broken.
MAX_ITEMS = 4096


@dataclass(frozen=True)
class Header:
    """What a file's header says: its format, the first frame's width and height (None when the
    header does not say), and `problem`, a broken structure found on the way (None: whole as far
    as it was read)."""

    format: str
    width: int = None
    height: int = None
    problem: str = None

    @property
    def pixels(self):
        return None if self.width is None or self.height is None else self.width * self.height


class _Broken(Exception):
    pass


def _read(file, count):
    data = file.read(count)
    if len(data) != count:
        raise _Broken("the header is cut short")
    return data


def read_header(path):
    """The Header of the image file at `path`, or None for a format not read here. OSError when
    the file cannot be opened."""
    with open(path, "rb") as file:
        start = file.read(16)
        reader = _reader(start)
        if reader is None:
            return None
        name, read = reader
        file.seek(0)
        try:
            return read(file)
        except (_Broken, struct.error) as error:
            return Header(name, problem=str(error) or "the header is cut short")


def _reader(start):
    if start.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", _png
    if start.startswith(b"\xff\xd8"):
        return "JPEG", _jpeg
    if start.startswith(b"BM"):
        return "BMP", _bmp
    if start.startswith((b"GIF87a", b"GIF89a")):
        return "GIF", _gif
    if start.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF", _tiff
    if start.startswith(b"RIFF") and start[8:12] == b"WEBP":
        return "WebP", _webp
    if re.match(rb"P[1-7]\s|P[Ff]\s", start):
        return "PNM", _pnm
    if start.startswith(b"#?"):
        return "HDR", _hdr
    if start.startswith(b"\x59\xa6\x6a\x95"):
        return "Sun raster", _sun
    return None


def _png(file):
    _read(file, 8)
    length, kind = struct.unpack(">I4s", _read(file, 8))
    if kind != b"IHDR" or length != 13:
        raise _Broken("the first chunk is not IHDR")
    data = _read(file, 13)
    width, height = struct.unpack(">II", data[:8])
    problem = None if _crc_ok(file, kind, data) else "bad checksum in chunk IHDR"
    read, items = 0, 0
    while problem is None:  # the chunks before the image data: their checksums
        items += 1
        header = file.read(8)
        if len(header) < 8 or items > MAX_ITEMS:
            problem = "no image data" if len(header) < 8 else "too many chunks before the image data"
            break
        length, kind = struct.unpack(">I4s", header)
        if kind in (b"IDAT", b"IEND"):
            break
        if length > 0x7FFFFFFF or read + length > HEADER_BYTES:
            problem = f"chunk {kind.decode('latin-1')!r} of {length} bytes"
            break
        crc = zlib.crc32(kind)
        for offset in range(0, length, 1 << 20):
            crc = zlib.crc32(_read(file, min(1 << 20, length - offset)), crc)
        read += length
        if struct.unpack(">I", _read(file, 4))[0] != crc:
            problem = f"bad checksum in chunk {kind.decode('latin-1')!r}"
    return Header("PNG", width, height, problem)


def _crc_ok(file, kind, data):
    return struct.unpack(">I", _read(file, 4))[0] == zlib.crc32(data, zlib.crc32(kind))


# The JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC).
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(file):
    _read(file, 2)
    for _ in range(MAX_ITEMS):
        byte = _read(file, 1)
        if byte != b"\xff":
            raise _Broken("a segment does not start with a marker")
        marker = _read(file, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(file, 1)[0]
        if marker in range(0xD0, 0xD8) or marker == 0x01:
            continue
        if marker in (0xD9, 0xDA):
            raise _Broken("no frame header before the scan")
        length = struct.unpack(">H", _read(file, 2))[0]
        if length < 2:
            raise _Broken("a segment of length below 2")
        if marker in _SOF:
            _, height, width = struct.unpack(">BHH", _read(file, 5))
            if height == 0 or width == 0:
                return Header("JPEG", problem="the frame header gives no height (it comes later, in a DNL segment)")
            return Header("JPEG", width, height)
        file.seek(length - 2, 1)
    raise _Broken("too many segments before the frame header")


def _bmp(file):
    _read(file, 14)
    size = struct.unpack("<I", _read(file, 4))[0]
    if size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", _read(file, 4))
    elif 16 <= size <= 1024:
        width, height = struct.unpack("<ii", _read(file, 8))
    else:
        raise _Broken(f"an information header of {size} bytes")
    if width <= 0 or height in (0, -(2 ** 31)):
        raise _Broken(f"a width of {width} and height of {height}")
    return Header("BMP", width, abs(height))


def _gif(file):
    _read(file, 6)
    width, height, flags = struct.unpack("<HHB", _read(file, 5))
    _read(file, 2)
    if flags & 0x80:
        file.seek(3 << ((flags & 7) + 1), 1)  # the global colour table
    for _ in range(MAX_ITEMS):
        block = _read(file, 1)
        if block == b"\x21":  # an extension: its label, then sub-blocks up to an empty one
            _read(file, 1)
            for _ in range(1 << 16):
                size = _read(file, 1)[0]
                if size == 0:
                    break
                file.seek(size, 1)
            else:
                raise _Broken("an extension that does not end")
        elif block == b"\x2c":  # the first image: it may reach past the logical screen
            left, top, frame_width, frame_height = struct.unpack("<HHHH", _read(file, 8))
            return Header("GIF", max(width, left + frame_width), max(height, top + frame_height))
        elif block == b"\x3b":
            raise _Broken("no image before the trailer")
        else:
            raise _Broken(f"an unknown block {block!r}")
    raise _Broken("too many blocks before the first image")


def _tiff(file):
    order = "<" if _read(file, 2) == b"II" else ">"
    version = struct.unpack(order + "H", _read(file, 2))[0]
    big = version == 43
    if big:
        _read(file, 4)
        offset = struct.unpack(order + "Q", _read(file, 8))[0]
        count_format, entry_format, entry_size = "Q", "HHQ8s", 20
    else:
        offset = struct.unpack(order + "I", _read(file, 4))[0]
        count_format, entry_format, entry_size = "H", "HHI4s", 12
    file.seek(offset)
    count = struct.unpack(order + count_format, _read(file, struct.calcsize(count_format)))[0]
    if count > MAX_ITEMS:
        raise _Broken(f"a directory of {count} entries")
    found = {}
    for _ in range(count):
        tag, kind, number, value = struct.unpack(order + entry_format, _read(file, entry_size))
        if tag in (256, 257) and number >= 1:  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            formats = {3: "H", 4: "I", 16: "Q"}
            if kind not in formats or struct.calcsize(formats[kind]) > len(value):
                raise _Broken(f"tag {tag} of type {kind}")
            found[tag] = struct.unpack(order + formats[kind], value[:struct.calcsize(formats[kind])])[0]
    if 256 not in found or 257 not in found:
        raise _Broken("the first directory gives no width or height")
    return Header("TIFF", found[256], found[257])


def _webp(file):
    _read(file, 12)
    kind, _ = struct.unpack("<4sI", _read(file, 8))
    data = _read(file, 10)
    if kind == b"VP8X":  # the canvas: 24-bit width - 1 and height - 1
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
    elif kind == b"VP8L":
        if data[0] != 0x2F:
            raise _Broken("a lossless chunk without its signature")
        bits = int.from_bytes(data[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise _Broken("a lossy chunk without its start code")
        width, height = struct.unpack("<HH", data[6:10])
        width, height = width & 0x3FFF, height & 0x3FFF
    else:
        raise _Broken(f"a first chunk {kind!r}")
    return Header("WebP", width, height)


def _tokens(file, count, limit=4096):
    """The first `count` whitespace-separated tokens of a text header (# comments skipped)."""
    text = file.read(limit)
    text = re.sub(rb"#[^\n\r]*", b" ", text)
    tokens = text.split()
    if len(tokens) < count:
        raise _Broken("the header is cut short")
    return tokens[:count]


def _number(token):
    if not re.fullmatch(rb"[0-9]{1,10}", token):
        raise _Broken(f"a size {token[:20]!r} that is not a number")
    return int(token)


def _pnm(file):
    magic = _read(file, 2)
    if magic == b"P7":  # PAM: WIDTH and HEIGHT lines up to ENDHDR
        text = re.sub(rb"#[^\n\r]*", b" ", file.read(4096))
        found = dict(re.findall(rb"^\s*(WIDTH|HEIGHT)\s+(\S+)", text, re.M))
        if b"WIDTH" not in found or b"HEIGHT" not in found:
            raise _Broken("no WIDTH or HEIGHT")
        return Header("PNM", _number(found[b"WIDTH"]), _number(found[b"HEIGHT"]))
    width, height = (_number(token) for token in _tokens(file, 2))
    return Header("PNM", width, height)


def _hdr(file):
    text = file.read(65536)
    found = re.search(rb"\n\n([-+])([YX]) ([0-9]{1,10}) ([-+])([YX]) ([0-9]{1,10})", text)
    if found is None:
        raise _Broken("no resolution line")
    first, second = int(found.group(3)), int(found.group(6))
    return Header("HDR", *((second, first) if found.group(2) == b"Y" else (first, second)))


def _sun(file):
    _read(file, 4)
    width, height = struct.unpack(">II", _read(file, 8))
    return Header("Sun raster", width, height)


# -- .npy arrays -------------------------------------------------------------------------------------


class NpyVersionError(ValueError):
    """A .npy header of a format version other than 1.0 and 2.0: `version` (major, minor)."""

    def __init__(self, version):
        super().__init__(f"a .npy file of format version {version[0]}.{version[1]}")
        self.version = tuple(version)


def read_npy_header(stream):
    """(shape, fortran_order, dtype) from the .npy header at the start of `stream`
    (numpy.lib.format, versions 1.0 and 2.0), the stream left at the first value: no value is
    read. NpyVersionError for another version; a malformed header raises what numpy raises
    (ValueError, EOFError, SyntaxError or TypeError): each caller words its own message."""
    from numpy.lib import format as npy

    version = npy.read_magic(stream)
    if version == (1, 0):
        return npy.read_array_header_1_0(stream)
    if version == (2, 0):
        return npy.read_array_header_2_0(stream)
    raise NpyVersionError(version)
