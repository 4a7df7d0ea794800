"""Area tests' helpers: two small tiles in two UTM zones, their STAC items, and an independent oracle.

The oracle is written here from the definitions, sharing no code with the core: each scene
warped onto the whole output grid (nearest), the scenes of one solar day and platform fused
(first valid sample in (time, href) order), then the median. It warps two ways: exactly (each
output pixel centre projected by pyproj, the source pixel holding it taken), and by
``rasterio.warp.reproject``, whose approximate transformer (GDAL's default 0.125 pixel error)
moves centres within 1/8 pixel of a source pixel edge to the neighbour, varying along a row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

#: Two tiles across the zone 30 / 31 edge (0 degrees E) at 45 N, overlapping by about 1.6 km.
TILES = {
    "30TYQ": ("EPSG:32630", Affine(10.0, 0.0, 731720.0, 0.0, -10.0, 4990000.0)),
    "31TBK": ("EPSG:32631", Affine(10.0, 0.0, 261900.0, 0.0, -10.0, 4990000.0)),
}
TILE_WIDTH, TILE_HEIGHT = 640, 480
#: Passes: (day, platform, tiles). The first four passes cover both tiles, seconds apart.
PASSES = [
    (datetime(2023, 5, 3, 10, 56, 30, tzinfo=UTC), "sentinel-2a", ("30TYQ", "31TBK")),
    (datetime(2023, 5, 8, 10, 56, 30, tzinfo=UTC), "sentinel-2b", ("30TYQ", "31TBK")),
    (datetime(2023, 5, 13, 10, 56, 30, tzinfo=UTC), "sentinel-2a", ("30TYQ", "31TBK")),
    (datetime(2023, 5, 18, 10, 56, 30, tzinfo=UTC), "sentinel-2b", ("30TYQ", "31TBK")),
    (datetime(2023, 5, 23, 10, 56, 30, tzinfo=UTC), "sentinel-2a", ("30TYQ",)),
    (datetime(2023, 5, 28, 10, 56, 30, tzinfo=UTC), "sentinel-2b", ("31TBK",)),
    (datetime(2023, 6, 2, 10, 56, 30, tzinfo=UTC), "sentinel-2a", ("30TYQ", "31TBK")),
]
#: An output area inside both tiles' union, across the zone edge.
BBOX = [-0.05, 44.99, 0.05, 45.02]


def scene_pixels(rng: np.random.Generator) -> np.ndarray:
    """Values 1..254, with blobs of cloud (255) and a swath gap (0)."""
    data = rng.integers(1, 255, (3, TILE_HEIGHT, TILE_WIDTH), dtype=np.uint8)
    rows, cols = np.mgrid[:TILE_HEIGHT, :TILE_WIDTH]
    for _ in range(3):
        cy, cx, r = rng.integers(0, TILE_HEIGHT), rng.integers(0, TILE_WIDTH), rng.integers(30, 90)
        data[:, (rows - cy) ** 2 + (cols - cx) ** 2 < r * r] = 255
    gap = rng.integers(0, TILE_WIDTH)
    data[:, cols < gap * 0.3] = 0
    data[:, rng.uniform(size=(TILE_HEIGHT, TILE_WIDTH)) < 0.05] = 0
    return data


def write_area_series(folder: Path, seed: int = 3) -> Path:
    """The scenes of :data:`PASSES` as COGs, and their items.json (ItemCollection); returns its path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    features = []
    for moment, platform, tiles in PASSES:
        for k, tile in enumerate(tiles):
            crs, transform = TILES[tile]
            taken = moment + timedelta(seconds=5 * k)
            path = folder / f"T{tile}_{taken:%Y%m%dT%H%M%S}_TCI.tif"
            with rasterio.open(
                path, "w", driver="COG", width=TILE_WIDTH, height=TILE_HEIGHT, count=3, dtype="uint8", crs=crs,
                transform=transform, compress="DEFLATE", blocksize=256, nodata=0,
            ) as dst:
                dst.write(scene_pixels(rng))
            west, south, east, north = transform_bounds(
                crs, "EPSG:4326", transform.c, transform.f - 10 * TILE_HEIGHT, transform.c + 10 * TILE_WIDTH, transform.f
            )
            features.append({
                "type": "Feature", "stac_version": "1.1.0", "id": path.stem,
                "bbox": [west, south, east, north],
                "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]},
                "properties": {"datetime": taken.isoformat().replace("+00:00", "Z"), "platform": platform,
                               "grid:code": f"MGRS-{tile}", "proj:code": crs},
                "assets": {"visual": {"href": str(path), "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
                "links": [],
            })
    items = folder / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return items


def _valid(stack: np.ndarray) -> np.ndarray:
    return np.all((stack > 0) & (stack < 255), axis=-3)


def warp_exact(src, crs: str, transform: Affine, width: int, height: int) -> np.ndarray:
    """Nearest neighbour by the book: each output pixel centre projected exactly, its source pixel read."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = transform @ (cols, rows)
    sx, sy = Transformer.from_crs(crs, src.crs, always_xy=True).transform(xs, ys)
    col, row = ~src.transform @ (sx, sy)
    col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    inside = (col >= 0) & (col < src.width) & (row >= 0) & (row < src.height)
    data = src.read()
    out = np.zeros((3, height, width), np.uint8)
    out[:, inside] = data[:, row[inside], col[inside]]
    return out


def warp_reproject(src, crs: str, transform: Affine, width: int, height: int) -> np.ndarray:
    out = np.zeros((3, height, width), np.uint8)
    reproject(rasterio.band(src, (1, 2, 3)), out, dst_transform=transform, dst_crs=crs,
              resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    return out


def oracle(items: list[dict], crs: str, transform: Affine, width: int, height: int, warp=warp_exact) -> tuple[np.ndarray, ...]:
    """(luminance rgb, per-band rgb, count of observations) of ``items`` on the given grid."""
    seen, ordered = set(), []
    for item in sorted(items, key=lambda i: (i["properties"]["datetime"], i["assets"]["visual"]["href"])):
        href = item["assets"]["visual"]["href"]
        if href not in seen:
            seen.add(href)
            ordered.append(item)
    observations: dict[tuple, np.ndarray] = {}
    for item in ordered:
        with rasterio.open(item["assets"]["visual"]["href"]) as src:
            warped = warp(src, crs, transform, width, height)
        west, _, east, _ = item["bbox"]
        moment = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        key = ((moment + timedelta(hours=(west + east) / 2 / 15)).date(), item["properties"].get("platform"))
        if key not in observations:
            observations[key] = warped
        else:
            fused = observations[key]
            take = ~_valid(fused) & _valid(warped)
            fused[:, take] = warped[:, take]
    return median_oracle(np.stack(list(observations.values())))  # (G, 3, H, W), in acquisition order


def median_oracle(stack: np.ndarray) -> tuple[np.ndarray, ...]:
    """(luminance rgb, per-band rgb, count) of a (T, 3, H, W) stack, vectorised from the definitions."""
    stack = stack.astype(np.int64)
    valid = _valid(stack)
    count = valid.sum(axis=0)
    g = stack.shape[0]
    # Luminance: sort valid samples by (R + G + B, index); the one at count // 2.
    key = np.where(valid, stack.sum(axis=1) * g + np.arange(g)[:, None, None], np.iinfo(np.int64).max)
    pick = np.take_along_axis(np.argsort(key, axis=0), (count // 2)[None], axis=0)[0]
    lum = np.take_along_axis(stack, pick[None, None], axis=0)[0]
    lum[:, count == 0] = 0
    # Per band: the floor of the mean of the two middle valid values.
    values = np.sort(np.where(valid[:, None], stack, 10**6), axis=0)
    low = np.take_along_axis(values, np.maximum(count - 1, 0)[None, None] // 2 * np.ones((1, 3, 1, 1), int), axis=0)[0]
    high = np.take_along_axis(values, (count // 2)[None, None] * np.ones((1, 3, 1, 1), int), axis=0)[0]
    per_band = np.where(count > 0, (low + high) // 2, 0)
    return lum.astype(np.uint8), per_band.astype(np.uint8), count.astype(np.uint16)
