"""A timelapse of a job's periods: their quicklooks as one animated GIF, each frame labelled with its period."""

from __future__ import annotations

import os
import tempfile

from temporal_median.base.errors import InvalidRequest

# GIF, not WebP, by default: every browser, mail client, chat and image viewer plays an animated
# GIF, where animated WebP still is not shown by some viewers and previewers. GIF's limit, 256
# colours, is per frame here (each frame gets its own adaptive palette), which a preview of a
# quicklook hardly shows. A path ending in .webp writes an animated WebP instead (full colour,
# smaller), for those who want it.

FRAME_MS = 800
#: Letterbox bars and nodata (transparent quicklook pixels): near black, as the quicklook's nodata.
BACKGROUND = (16, 16, 16)
#: The label: light text on a dark, slightly translucent box in the top-left corner.
LABEL_BOX = (0, 0, 0, 190)
LABEL_TEXT = (245, 245, 245, 255)
#: Label height relative to the frame's, within [min, max] pixels.
_LABEL_FRACTION, _LABEL_MIN_PX, _LABEL_MAX_PX = 1 / 16, 12, 64


def _checked(frames, frame_ms) -> list[tuple[str, str]]:
    if not isinstance(frame_ms, int) or isinstance(frame_ms, bool) or not 20 <= frame_ms <= 60_000:
        raise InvalidRequest(f"frame_ms must be an integer from 20 to 60000, got {frame_ms!r}")
    checked = []
    for frame in frames:
        if not (isinstance(frame, (tuple, list)) and len(frame) == 2 and all(isinstance(v, str) for v in frame)):
            raise InvalidRequest(f"a frame is a (label, png_path) pair of strings, got {frame!r}")
        label, path = frame
        if not label.strip():
            raise InvalidRequest(f"the frame of {path!r} has an empty label")
        checked.append((label.strip(), path))
    return checked


def _opened(path: str):
    """The quicklook as RGB, its transparent (nodata) pixels on the background."""
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(flat, rgba).convert("RGB")


def _letterboxed(image, size: tuple[int, int]):
    """``image`` scaled to fit ``size`` (aspect kept), centred on the background."""
    from PIL import Image

    width, height = size
    scale = min(width / image.width, height / image.height)
    fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if fitted != image.size:
        image = image.resize(fitted, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, BACKGROUND)
    canvas.paste(image, ((width - fitted[0]) // 2, (height - fitted[1]) // 2))
    return canvas


def label_font(height: int):
    """The label's font for frames ``height`` pixels high: Pillow's own scalable default font
    (shipped inside Pillow, no font file or network needed)."""
    from PIL import ImageFont

    size = round(min(_LABEL_MAX_PX, max(_LABEL_MIN_PX, height * _LABEL_FRACTION)))
    return ImageFont.load_default(size=size)


def labelled(image, label: str, font):
    """A copy of ``image`` with ``label`` in light text on a dark box in its top-left corner."""
    from PIL import Image, ImageDraw

    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = max(3, (bottom - top) // 3)
    box = (pad, pad, pad + (right - left) + 2 * pad, pad + (bottom - top) + 2 * pad)
    draw.rectangle(box, fill=LABEL_BOX)
    draw.text((2 * pad - left, 2 * pad - top), label, font=font, fill=LABEL_TEXT)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def timelapse(frames: list[tuple[str, str]], out_path: str, *, frame_ms: int = FRAME_MS) -> str | None:
    """Write an animated GIF of the periods' quicklooks, in the order given, each labelled.

    Every frame is the quicklook with nodata on a near-black background, scaled (aspect kept) and
    centred onto the size of the largest quicklook (by area), with its label in light text on a
    dark box in the top-left corner. The animation loops forever, each frame shown ``frame_ms``.
    Nothing is written for fewer than two frames: a single period is no timelapse.

    Parameters
    ----------
    frames : list of (str, str)
        ``(label, png_path)`` per period, in display order, e.g. ``[("2023-01", ".../2023-01/quicklook.png"), ...]``.
    out_path : str
        Local path to write, ``.gif`` (or ``.webp`` for an animated WebP); written to a temporary
        file beside it, then moved into place.
    frame_ms : int
        How long each frame is shown, in milliseconds (GIF keeps tens of milliseconds).

    Returns
    -------
    str or None
        ``out_path``, or None when there were fewer than two frames (nothing written).

    Raises
    ------
    InvalidRequest
        A malformed frame, an empty label, ``frame_ms`` out of 20..60000 or an unknown extension.
    OSError
        If a quicklook cannot be read or the output cannot be written.
    """
    frames = _checked(frames, frame_ms)
    if len(frames) < 2:
        return None
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in (".gif", ".webp"):
        raise InvalidRequest(f"a timelapse is a .gif or a .webp, got {out_path!r}")
    images = [_opened(path) for _, path in frames]
    size = max((image.size for image in images), key=lambda s: s[0] * s[1])
    font = label_font(size[1])
    rendered = [labelled(_letterboxed(image, size), label, font) for image, (label, _) in zip(images, frames)]
    if extension == ".gif":
        from PIL import Image

        # One adaptive palette per frame (median cut): the seasons' colours differ from frame to frame.
        rendered = [frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT) for frame in rendered]
        options = {"format": "GIF", "optimize": False, "disposal": 1}
    else:
        options = {"format": "WEBP", "quality": 85, "method": 4}
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=extension, dir=directory)
    os.close(fd)
    try:
        rendered[0].save(tmp, save_all=True, append_images=rendered[1:], duration=frame_ms, loop=0, **options)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_path
