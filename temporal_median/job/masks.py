"""Cloud masks from a classification raster (Sentinel-2's SCL): the request's field, and each scene's mask."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

from temporal_median.base.errors import InvalidRequest
from temporal_median.scenes.scene import Scene

#: ESA's Sentinel-2 L2A scene classes (SCL).
SCL_CLASSES = {
    0: "no data", 1: "saturated or defective", 2: "dark area pixels", 3: "cloud shadows", 4: "vegetation",
    5: "not vegetated", 6: "water", 7: "unclassified", 8: "cloud medium probability",
    9: "cloud high probability", 10: "thin cirrus", 11: "snow",
}
#: Dropped by default: no data, saturated or defective, cloud shadows, clouds, thin cirrus (snow is kept).
DEFAULT_EXCLUDE = (0, 1, 3, 8, 9, 10)
DEFAULT_ASSET = "scl"
_TCI = re.compile(r"_TCI(?=[_.])", re.IGNORECASE)
_SCL = re.compile(r"_SCL(?=[_.])", re.IGNORECASE)


def is_mask_name(url: str) -> bool:
    """True for a classification sidecar's name (``..._SCL.tif``): a listed folder's mask, not a scene."""
    return bool(_SCL.search(url.rsplit("/", 1)[-1]))


@dataclass(frozen=True)
class Mask:
    """Which asset holds each scene's classes, and the classes whose samples are dropped."""

    asset: str = DEFAULT_ASSET
    exclude: tuple[int, ...] = DEFAULT_EXCLUDE

    @classmethod
    def from_request(cls, value) -> "Mask | None":
        """The request's ``mask``: ``{"asset": "scl", "exclude": [0, 1, 3, 8, 9, 10]}`` (both optional), or None."""
        if value is None:
            return None
        if isinstance(value, str):
            value = {"asset": value}
        if not isinstance(value, dict) or set(value) - {"asset", "exclude"}:
            raise InvalidRequest(f"'mask' must be {{\"asset\": \"scl\", \"exclude\": [classes]}}, got {value!r}")
        asset = value.get("asset", DEFAULT_ASSET)
        if not isinstance(asset, str) or not asset.strip():
            raise InvalidRequest(f"'mask.asset' must be an asset key such as \"scl\", got {asset!r}")
        exclude = value.get("exclude", list(DEFAULT_EXCLUDE))
        if not isinstance(exclude, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in exclude):
            raise InvalidRequest(f"'mask.exclude' must be a list of class numbers, got {exclude!r}")
        unknown = sorted(set(exclude) - set(SCL_CLASSES))
        if unknown:
            raise InvalidRequest(f"'mask.exclude': unknown class(es) {unknown}; the SCL classes are 0-11")
        return cls(asset.strip(), tuple(sorted(set(exclude))))

    def to_dict(self) -> dict:
        return {"asset": self.asset, "exclude": list(self.exclude)}

    def url_of(self, scene: Scene, exists: Callable[[str], bool]) -> str:
        """The mask of ``scene``: its item's asset (key matched case-insensitively: ``scl`` on Earth
        Search, ``SCL`` on Planetary Computer), or for a plain file the sidecar named like it with
        ``_SCL`` in place of ``_TCI``.

        Raises
        ------
        InvalidRequest
            Naming the scene, when it has no such asset or sidecar.
        """
        wanted = self.asset.lower()
        for key, href in scene.assets:
            if key.lower() == wanted:
                return href
        if scene.item_id is not None:
            keys = ", ".join(key for key, _ in scene.assets) or "none readable"
            raise InvalidRequest(f"'mask': item {scene.item_id} has no {self.asset!r} asset (its assets: {keys})")
        folder, name = os.path.split(scene.url)
        sidecar = _TCI.sub(f"_{self.asset.upper()}", name)
        # Beside the scene, or in a folder named for the asset (so a listed folder of scenes
        # holds no masks: temporal-median sample writes them to scl/).
        candidates = [f"{folder}/{sidecar}", f"{folder}/{self.asset.lower()}/{sidecar}"] if sidecar != name else []
        for url in candidates:
            if exists(url):
                return url
        raise InvalidRequest(
            f"'mask': {scene.url} has no {self.asset.upper()} mask (a file named like the scene with "
            f"_{self.asset.upper()} in place of _TCI, beside it or in {self.asset.lower()}/)"
        )
