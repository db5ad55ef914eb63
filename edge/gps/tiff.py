"""Find the EXIF (TIFF) block of an image and check it is safe to hand to piexif.

piexif builds struct formats such as `"B" * count` straight from the file's entry counts, so one
crafted entry can make it allocate gigabytes. `exif_block` walks the same IFDs piexif will (0th,
Exif, GPS, Interop, 1st) and rejects any entry whose declared size exceeds the whole block.
"""

from __future__ import annotations

import struct

JPEG_SOI = b"\xff\xd8"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_MAX_IFDS = 8


class ExifFormatError(ValueError):
    """The data is not an image with a usable EXIF block, or the block is malformed."""


def is_image(head: bytes) -> bool:
    """JPEG or TIFF (what EXIF GPS can come from)."""
    return head.startswith(JPEG_SOI) or head[:4] in TIFF_MAGIC


def _jpeg_app1(data: bytes) -> bytes | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            return None
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
            return seg[6:]
        i += 2 + length
    return None


def exif_block(data: bytes) -> bytes | None:
    """The TIFF block of JPEG/TIFF bytes or an 'Exif\\0\\0' blob; None when the image has no EXIF.

    Raises ExifFormatError when the data is no such image or the block is unsafe/malformed."""
    if data.startswith(JPEG_SOI):
        block = _jpeg_app1(data)
    elif data[:4] in TIFF_MAGIC:
        block = data
    elif data.startswith(b"Exif"):
        block = data[6:]
    else:
        raise ExifFormatError("neither JPEG nor TIFF nor an EXIF blob")
    if block is not None:
        check_block(block)
    return block


def check_block(block: bytes) -> None:
    """Raise ExifFormatError unless every entry of the IFDs piexif reads fits inside the block."""
    if block[:2] == b"II":
        endian = "<"
    elif block[:2] == b"MM":
        endian = ">"
    else:
        raise ExifFormatError("bad byte-order mark")
    if len(block) < 8:
        raise ExifFormatError("truncated TIFF header")
    todo = [struct.unpack(endian + "L", block[4:8])[0]]
    seen: set[int] = set()
    first = True
    while todo and len(seen) < _MAX_IFDS:
        ptr = todo.pop()
        if ptr in seen:
            continue
        seen.add(ptr)
        pointers, next_ifd = _check_ifd(block, ptr, endian)
        todo.extend(pointers)
        if first and next_ifd:
            todo.append(next_ifd)
        first = False


def _check_ifd(block: bytes, ptr: int, endian: str) -> tuple[list[int], int]:
    if ptr + 2 > len(block):
        raise ExifFormatError(f"IFD offset {ptr} outside the block")
    (count,) = struct.unpack(endian + "H", block[ptr : ptr + 2])
    end = ptr + 2 + 12 * count
    if end > len(block):
        raise ExifFormatError(f"IFD at {ptr} with {count} entries overruns the block")
    pointers = []
    for k in range(count):
        e = ptr + 2 + 12 * k
        tag, typ, n = struct.unpack(endian + "HHL", block[e : e + 8])
        if n * _TYPE_SIZE.get(typ, 1) > len(block):
            raise ExifFormatError(f"tag {tag:#06x} declares {n} values, more than the block holds")
        if tag in (_EXIF_IFD, _GPS_IFD, _INTEROP_IFD) and n == 1 and typ in (3, 4):
            fmt = endian + ("H" if typ == 3 else "L")
            pointers.append(struct.unpack(fmt, block[e + 8 : e + 8 + struct.calcsize(fmt)])[0])
    next_ifd = struct.unpack(endian + "L", block[end : end + 4])[0] if end + 4 <= len(block) else 0
    return pointers, next_ifd
