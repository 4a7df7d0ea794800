"""The mosaic COG from the tiles' own compressed blocks: its full resolution is never compressed twice."""

from __future__ import annotations

import os

import rasterio
import rasterio.shutil

from .profiles import creation_options
from .tiff import (
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
from .vrt import TileSource

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
    if window.col_off % blocksize or window.row_off % blocksize:
        return None, f"tile {tile.tile_id} starts at ({window.col_off}, {window.row_off}), off the {blocksize}-px block grid"
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


def copy_tile_blocks(tiles: list[TileSource], scratch: str, dest: str, *, width: int, height: int, blocksize: int) -> str | None:
    """Write the mosaic COG ``dest`` from the tiles' blocks and the overviews of ``scratch``.

    ``scratch`` is the whole mosaic, uncompressed, with its overviews already built (the same
    pixels as the tiles); only its overviews are compressed (mosaic profile) into the COG.

    Returns
    -------
    str or None
        None once ``dest`` is written; otherwise why the tiles' blocks cannot be copied (tiles
        of another layout, a grid off the block grid, remote tiles, a mosaic of one block), and
        nothing is written: the caller compresses the scratch instead.
    """
    if width <= blocksize and height <= blocksize:
        return "the mosaic is a single block"
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
        # The scratch's first overview, with the rest as its own overviews, compressed as a COG.
        with rasterio.open(scratch, OVERVIEW_LEVEL=0) as level1:
            rasterio.shutil.copy(level1, overviews, driver="COG", overviews="FORCE_USE_EXISTING", **options)
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
