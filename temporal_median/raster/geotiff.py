"""GeoTIFF headers read without GDAL: the raw GeoTIFF keys of a TIFF's first directory."""

from __future__ import annotations

from temporal_median.raster.tiff import TYPE_SIZES

_GEOKEY_TAGS = (34735, 34736, 34737)  # GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams


def geotiff_keys(head: bytes) -> bytes | None:
    """The raw GeoTIFF key tags of a TIFF's first directory, from its first bytes (None if not all there).

    Two files with equal keys have the same CRS as GDAL reads it: nothing else in the file
    defines it, and sidecar files are not looked for (GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR).
    """
    try:
        order = {b"II": "<", b"MM": ">"}[head[:2]]
        magic = int.from_bytes(head[2:4], "little" if order == "<" else "big")
        big = magic == 43
        if magic not in (42, 43):
            return None
        endian = "little" if order == "<" else "big"

        def number(offset: int, size: int) -> int:
            if offset + size > len(head):
                raise IndexError(offset)
            return int.from_bytes(head[offset : offset + size], endian)

        ifd = number(8, 8) if big else number(4, 4)
        entries = number(ifd, 8 if big else 2)
        first = ifd + (8 if big else 2)
        entry_size, count_size, inline = (20, 8, 8) if big else (12, 4, 4)
        found = []
        for i in range(entries):
            entry = first + i * entry_size
            tag = number(entry, 2)
            if tag not in _GEOKEY_TAGS:
                continue
            kind, count = number(entry + 2, 2), number(entry + 4, count_size)
            size = TYPE_SIZES.get(kind, 0) * count
            value_at = entry + 4 + count_size
            offset = value_at if size <= inline else number(value_at, inline)
            if size == 0 or offset + size > len(head):
                return None
            found.append(head[entry : entry + 4] + head[offset : offset + size])
        return b"".join(found)
    except (KeyError, IndexError):
        return None
