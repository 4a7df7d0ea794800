"""GDAL's C API through ctypes: the direct reader of windows, on the very libgdal rasterio loaded."""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Sequence

from temporal_median.raster.gdal import loaded_gdal

# Why: rasterio.open costs about 0.85 ms of GIL-held work per scene (it reads the CRS through
# PROJ, the transform, nodata, colour interpretation...), 15x GDALOpenEx itself: 0.2 s of a
# 216-scene window on 2 cores. ctypes releases the GIL around every call, so reads run truly in
# parallel; the library is rasterio's own (same drivers, configuration and caches). Callers fall
# back to rasterio where open_raster returns None.

GDT_BYTE = 1
_GDAL_OF_RASTER = 0x02
_GDAL_OF_VERBOSE_ERROR = 0x40
_CE_FAILURE = 3
_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)


class GdalCallError(OSError):
    """A GDAL C call failed; the message holds every error GDAL reported during it."""


_captured = threading.local()


@_ERROR_HANDLER
def _collect_errors(error_class, error_number, message):  # pragma: no cover - called by GDAL
    messages = getattr(_captured, "messages", None)
    if messages is not None and error_class >= _CE_FAILURE:
        messages.append((message or b"").decode("utf-8", "replace"))


class GdalLibrary:
    """The few GDAL C functions the direct reader needs, with their ctypes prototypes."""

    def __init__(self, lib) -> None:
        vp, ip, i, i64, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_char_p
        self._lib = lib

        def proto(name, restype, *argtypes):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, list(argtypes)
            return function

        self.open_ex = proto("GDALOpenEx", vp, cp, ctypes.c_uint, vp, vp, vp)
        self.close = proto("GDALClose", i, vp)
        self.x_size = proto("GDALGetRasterXSize", i, vp)
        self.y_size = proto("GDALGetRasterYSize", i, vp)
        self.count = proto("GDALGetRasterCount", i, vp)
        self.band = proto("GDALGetRasterBand", vp, vp, i)
        self.data_type = proto("GDALGetRasterDataType", i, vp)
        self.block_size = proto("GDALGetBlockSize", None, vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
        self.geo_transform = proto("GDALGetGeoTransform", i, vp, ctypes.POINTER(ctypes.c_double))
        self.projection = proto("GDALGetProjectionRef", cp, vp)
        self.metadata_item = proto("GDALGetMetadataItem", cp, vp, cp, cp)
        self.raster_io = proto(
            "GDALDatasetRasterIOEx", i, vp, i, i, i, i, i, vp, i, i, i, i, ctypes.POINTER(ip), i64, i64, i64, vp
        )
        self.vsi_open = proto("VSIFOpenL", vp, cp, cp)
        self.vsi_read = proto("VSIFReadL", ctypes.c_size_t, vp, ctypes.c_size_t, ctypes.c_size_t, vp)
        self.vsi_close = proto("VSIFCloseL", i, vp)
        self.push_handler = proto("CPLPushErrorHandler", None, _ERROR_HANDLER)
        self.pop_handler = proto("CPLPopErrorHandler", None)
        self.error_reset = proto("CPLErrorReset", None)

    @contextlib.contextmanager
    def errors(self):
        """Collect GDAL's failures in this thread (a list of messages) while the block runs."""
        messages: list[str] = []
        previous = getattr(_captured, "messages", None)
        _captured.messages = messages
        self.push_handler(_collect_errors)
        self.error_reset()
        try:
            yield messages
        finally:
            self.pop_handler()
            _captured.messages = previous


class Raster:
    """An open GDAL dataset read through :class:`GdalLibrary` (one thread at a time; close it)."""

    def __init__(self, gdal: GdalLibrary, path: str) -> None:
        self._gdal = gdal
        with gdal.errors() as messages:
            handle = gdal.open_ex(path.encode(), _GDAL_OF_RASTER | _GDAL_OF_VERBOSE_ERROR, None, None, None)
        if not handle:
            raise GdalCallError(" | ".join(messages) or f"{path}: GDALOpenEx failed")
        self._handle = handle

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._handle:
            self._gdal.close(self._handle)
            self._handle = None

    @property
    def width(self) -> int:
        return self._gdal.x_size(self._handle)

    @property
    def height(self) -> int:
        return self._gdal.y_size(self._handle)

    @property
    def count(self) -> int:
        return self._gdal.count(self._handle)

    def data_type(self, band: int) -> int:
        """GDAL data type code of ``band`` (1-based); GDT_BYTE is uint8."""
        return self._gdal.data_type(self._gdal.band(self._handle, band))

    def block_shape(self, band: int = 1) -> tuple[int, int]:
        """(rows, columns) of ``band``'s internal blocks."""
        x, y = ctypes.c_int(), ctypes.c_int()
        self._gdal.block_size(self._gdal.band(self._handle, band), ctypes.byref(x), ctypes.byref(y))
        return y.value, x.value

    def gdal_transform(self) -> tuple:
        """GDAL's geotransform (c, a, b, f, d, e); (0, 1, 0, 0, 0, 1) when there is none, as rasterio."""
        values = (ctypes.c_double * 6)()
        if self._gdal.geo_transform(self._handle, values) != 0:
            return (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        return tuple(values)

    def projection(self) -> str:
        """The CRS as GDAL's WKT, "" when there is none."""
        value = self._gdal.projection(self._handle)
        return value.decode() if value else ""

    def metadata_item(self, name: str, domain: str = "", band: int | None = None) -> str | None:
        target = self._handle if band is None else self._gdal.band(self._handle, band)
        value = self._gdal.metadata_item(target, name.encode(), domain.encode() if domain else None)
        return value.decode() if value is not None else None

    def read(self, col_off: int, row_off: int, width: int, height: int, out, bands: Sequence[int] = (1, 2, 3)) -> None:
        """``bands`` of a window into ``out``, a C-contiguous (len(bands), height, width) uint8 array."""
        if out.shape != (len(bands), height, width) or out.dtype.itemsize != 1 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous ({len(bands)}, {height}, {width}) uint8 array")
        band_map = (ctypes.c_int * len(bands))(*bands)
        with self._gdal.errors() as messages:
            failed = self._gdal.raster_io(
                self._handle, 0, col_off, row_off, width, height, out.ctypes.data, width, height, GDT_BYTE,
                len(bands), band_map, 1, width, width * height, None,
            )
        if failed or messages:
            raise GdalCallError(" | ".join(messages) or f"GDALDatasetRasterIOEx failed ({failed})")


def read_head(path: str, size: int) -> bytes | None:
    """The first ``size`` bytes of a GDAL path through GDAL's VSI layer (None where unavailable).

    Remote files are served from /vsicurl/'s cache of what opening the dataset just fetched.
    """
    gdal = gdal_library()
    if gdal is None:
        return None
    with gdal.errors():
        handle = gdal.vsi_open(path.encode(), b"rb")
        if not handle:
            return None
        try:
            buffer = ctypes.create_string_buffer(size)
            got = gdal.vsi_read(buffer, 1, size, handle)
            return buffer.raw[:got]
        finally:
            gdal.vsi_close(handle)


def copy_file(path: str, dest: str, chunk: int = 4 << 20) -> bool:
    """Copy the file at GDAL path ``path`` (e.g. /vsigs/...) to the local file ``dest``, byte for
    byte; False where the direct API is unavailable, GdalCallError if GDAL cannot read it."""
    gdal = gdal_library()
    if gdal is None:
        return False
    buffer = ctypes.create_string_buffer(chunk)
    with gdal.errors() as messages:
        handle = gdal.vsi_open(path.encode(), b"rb")
        if not handle:
            raise GdalCallError(" | ".join(messages) or f"{path}: cannot open")
        try:
            with open(dest, "wb") as out:
                while True:
                    got = gdal.vsi_read(buffer, 1, chunk, handle)
                    out.write(buffer.raw[:got])
                    if got < chunk:
                        break
        finally:
            gdal.vsi_close(handle)
    if messages:
        raise GdalCallError(" | ".join(messages))
    return True


_library: GdalLibrary | None = None
_library_checked = False
_library_lock = threading.Lock()


def gdal_library() -> GdalLibrary | None:
    """The direct reader's GDAL bindings, or None where rasterio's libgdal cannot be reached."""
    global _library, _library_checked
    if not _library_checked:
        with _library_lock:
            if not _library_checked:
                lib = loaded_gdal()
                try:
                    _library = GdalLibrary(lib) if lib is not None else None
                except AttributeError:  # a GDAL without one of the functions: use rasterio
                    _library = None
                _library_checked = True
    return _library


def open_raster(path: str) -> Raster | None:
    """Open a GDAL path with the direct reader (None when it is unavailable); GdalCallError on failure."""
    gdal = gdal_library()
    return Raster(gdal, path) if gdal is not None else None
