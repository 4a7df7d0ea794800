"""The mosaic COG from the tiles' own compressed blocks: its full resolution is never compressed twice."""

from __future__ import annotations

import os

import numpy as np
import rasterio
import rasterio.shutil

from temporal_median.assembly.vrt import TileSource
from temporal_median.raster.profiles import creation_options
from temporal_median.raster.tiff import (
    DOUBLE,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    LONG,
    MODEL_PIXEL_SCALE,
    MODEL_TIEPOINT,
    MODEL_TRANSFORMATION,
    SHORT,
    Image,
    Level,
    Tag,
    TiffFormatError,
    overview_tags,
    read_file_images,
    tile_blocks,
    write_cog,
)

# Why: re-compressing the full resolution was most of the mosaic's work (the whole granule,
# DEFLATE with the predictor, after the last tile has landed: a serial cost of every job). Tiles
# are written with the mosaic's block size, compression and predictor, on a grid that is a
# multiple of the block size, so each mosaic block is one tile block, byte for byte. Only the
# overviews (a third of the pixels) are computed and compressed here, by GDAL, as before.

#: Tags that say how a block's bytes decode: every tile must agree with the mosaic's own on them.
_DECODING = (258, 259, 262, 277, 284, 317, 322, 323, 338, 339, 42113)
#: Tags that describe the dataset: every tile must agree with the first one.
_DATASET = (MODEL_PIXEL_SCALE, 34735, 34736, 34737, 42112)


def _tile_image(tile: TileSource, blocksize: int) -> tuple[Image | None, str]:
    """The tile's full-resolution image, or None and why its blocks cannot be used as they are."""
    window = tile.window
    if not os.path.isfile(tile.gdal_path):
        return None, f"tile {tile.tile_id} is not a local file ({tile.gdal_path})"
    try:
        image = read_file_images(tile.gdal_path)[0]
        shape = image.block_shape
    except (TiffFormatError, OSError) as exc:
        return None, f"tile {tile.tile_id}: {exc}"
    if shape != (blocksize, blocksize):
        return None, f"tile {tile.tile_id} has {shape[1]} x {shape[0]} blocks, the mosaic {blocksize} x {blocksize}"
    blocks = -(-window.width // blocksize) * -(-window.height // blocksize)
    if (image.width, image.height) != (window.width, window.height) or len(image.offsets) != blocks:
        return None, (f"tile {tile.tile_id} is {image.width} x {image.height} in {len(image.offsets)} blocks, "
                      f"its slot {window.width} x {window.height}")
    if MODEL_TIEPOINT not in image.tags or MODEL_TRANSFORMATION in image.tags:
        return None, f"tile {tile.tile_id} is not georeferenced by a tie point and pixel scale"
    return image, ""


def _size_tag(value: int) -> Tag:
    return Tag.of(SHORT if value < 2**16 else LONG, [value])


def _full_resolution(tiles: list[TileSource], images: list[Image], width: int, height: int, blocksize: int) -> Level:
    across = -(-width // blocksize)
    blocks: list = [(None, 0, 0)] * (across * -(-height // blocksize))
    for tile, image in zip(tiles, images):
        tile_across = image.blocks_across()
        first = (tile.window.row_off // blocksize) * across + tile.window.col_off // blocksize
        for index, block in enumerate(tile_blocks(image, tile.gdal_path)):
            down, right = divmod(index, tile_across)
            blocks[first + down * across + right] = block
    first_tile, first_image = tiles[0], images[0]
    # The mosaic's tie point from the first tile's, moved back by its offset (whatever the pixel
    # convention of its GeoKeys, which the mosaic keeps).
    i, j, k, x, y, z = first_image.tags[MODEL_TIEPOINT].values()[:6]
    scale_x, scale_y = first_image.tags[MODEL_PIXEL_SCALE].values()[:2]
    tags = dict(first_image.tags)
    tags[IMAGE_WIDTH], tags[IMAGE_LENGTH] = _size_tag(width), _size_tag(height)
    tags[MODEL_TIEPOINT] = Tag.of(DOUBLE, [i, j, k, x - first_tile.window.col_off * scale_x,
                                            y + first_tile.window.row_off * scale_y, z])
    return Level(tags, tuple(blocks))


def copy_obstacle(tiles: list[TileSource], width: int, height: int, blocksize: int) -> str | None:
    """Why the mosaic's geometry rules out copying the tiles' blocks (None if it does not).

    The tiles must start on the block grid, and the sides must be even so that the first
    overview is a plain 2x2 average of each tile (GDAL weights its samples on an odd side).
    """
    if width <= blocksize and height <= blocksize:
        return "the mosaic is a single block"
    if width % 2 or height % 2:
        return f"an odd side ({width} x {height}): GDAL's first overview is then not a 2x2 average"
    for tile in tiles:
        if tile.window.col_off % blocksize or tile.window.row_off % blocksize:
            return (f"tile {tile.tile_id} starts at ({tile.window.col_off}, {tile.window.row_off}), "
                    f"off the {blocksize}-px block grid")
    return None


def half_average(data: np.ndarray) -> np.ndarray:
    """The nodata-aware 2x2 average of ``data`` (bands, h, w) uint8, h and w even; nodata is 0.

    Each output sample is the mean of the valid (non-zero) samples of its 2x2 block, rounded half
    up, or 0 if there are none: GDAL's AVERAGE overview at factor 2 exactly, wherever the
    raster's sides are even (tests/test_assemble.py checks it against GDAL).
    """
    total = data[:, 0::2, 0::2].astype(np.uint16)
    total += data[:, 1::2, 0::2]
    total += data[:, 0::2, 1::2]
    total += data[:, 1::2, 1::2]
    valid = data != 0
    count = valid[:, 0::2, 0::2].astype(np.uint16)
    count += valid[:, 1::2, 0::2]
    count += valid[:, 0::2, 1::2]
    count += valid[:, 1::2, 1::2]
    # round(total / count) half up = (2 total + count) // (2 count); a block of nodata sums to 0.
    total *= 2
    total += count
    count *= 2
    np.maximum(count, 1, out=count)
    total //= count
    return total.astype(np.uint8)


def copy_tile_blocks(tiles: list[TileSource], reduced: str, dest: str, *, width: int, height: int, blocksize: int) -> str | None:
    """Write the mosaic COG ``dest`` from the tiles' blocks and the overviews in ``reduced``.

    ``reduced`` is the mosaic's first overview (half its width and height), uncompressed, with
    the further overviews built into it; it is compressed (mosaic profile) into the COG's
    overviews. The full resolution is the tiles' blocks, as they are.

    Returns
    -------
    str or None
        None once ``dest`` is written; otherwise why the tiles' blocks cannot be copied (tiles
        of another layout, a grid off the block grid, remote tiles, a mosaic of one block), and
        nothing is written: the caller compresses the scratch instead.
    """
    images = []
    for tile in tiles:
        image, why = _tile_image(tile, blocksize)
        if image is None:
            return why
        images.append(image)
    for tile, image in zip(tiles[1:], images[1:]):
        for tag in _DATASET:
            if image.tags.get(tag) != images[0].tags.get(tag):
                return f"tiles {tiles[0].tile_id} and {tile.tile_id} differ in TIFF tag {tag}"
    overviews = os.path.join(os.path.dirname(dest), ".overviews.tif")
    options = {k: v for k, v in creation_options("mosaic").items() if k.lower() != "overviews"}
    try:
        rasterio.shutil.copy(reduced, overviews, driver="COG", overviews="FORCE_USE_EXISTING", **options)
        reduced = read_file_images(overviews)
        for tag in _DECODING:
            if images[0].tags.get(tag) != reduced[0].tags.get(tag):
                return f"the tiles' TIFF tag {tag} is not the mosaic profile's"
        levels = [_full_resolution(tiles, images, width, height, blocksize)]
        levels += [Level(overview_tags(image.tags), tuple(tile_blocks(image, overviews))) for image in reduced]
        write_cog(dest, levels)
    finally:
        if os.path.exists(overviews):
            os.remove(overviews)
    return None
