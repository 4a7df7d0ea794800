"""The timelapse: the periods' quicklooks as an animated GIF, in order, labelled, letterboxed, looping."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageSequence

from temporal_median.assembly.timelapse import BACKGROUND, label_font, labelled, timelapse
from temporal_median.base.errors import InvalidRequest

RED, GREEN, BLUE = (200, 30, 30), (30, 170, 60), (40, 60, 210)
#: (label, colour, size): the largest is the second, the third is square (letterboxed sideways).
QUICKLOOKS = [("2023-01", RED, (160, 120)), ("2023-02", GREEN, (240, 180)), ("2023-03", BLUE, (90, 90))]


@pytest.fixture
def frames(tmp_path):
    """Three RGBA quicklooks of one colour each, their bottom-right corner transparent (nodata)."""
    out = []
    for label, colour, size in QUICKLOOKS:
        image = Image.new("RGBA", size, colour + (255,))
        image.paste((0, 0, 0, 0), (size[0] - 10, size[1] - 10, size[0], size[1]))
        path = tmp_path / f"{label}.png"
        image.save(path)
        out.append((label, str(path)))
    return out


def decoded(path) -> list[tuple[np.ndarray, dict]]:
    """Each frame of an animation as RGB pixels (composited as a viewer shows it), with its info."""
    with Image.open(path) as image:
        return [(np.asarray(frame.convert("RGB")), dict(frame.info)) for frame in ImageSequence.Iterator(image)]


def dominant(pixels: np.ndarray) -> tuple[int, ...]:
    return Counter(map(tuple, pixels.reshape(-1, 3).tolist())).most_common(1)[0][0]


def close(colour, expected, tolerance=12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(colour, expected))


def test_three_frames_in_order_labelled_looping(frames, tmp_path):
    out = tmp_path / "timelapse.gif"
    assert timelapse(frames, str(out), frame_ms=500) == str(out)
    with Image.open(out) as image:
        assert image.format == "GIF" and image.n_frames == 3 and image.size == (240, 180)
        assert image.info["loop"] == 0  # forever
    shown = decoded(out)
    assert [info["duration"] for _, info in shown] == [500, 500, 500]
    for (pixels, _), (label, colour, _) in zip(shown, QUICKLOOKS):
        assert pixels.shape == (180, 240, 3)
        assert close(dominant(pixels), colour), (label, dominant(pixels))
        # The label: a dark box with light text in the top-left corner, where the quicklook is one colour.
        corner = pixels[:30, :100].reshape(-1, 3).astype(int)
        assert (corner.max(axis=1) < 60).sum() > 300, label
        assert (corner.min(axis=1) > 200).sum() > 20, label
        assert not np.array_equal(pixels[:30, :100], np.broadcast_to(np.array(colour, np.uint8), (30, 100, 3)))
    # The labels differ, so their pixels do.
    assert not np.array_equal(shown[0][0][:30, :100], shown[1][0][:30, :100])


def test_frames_are_letterboxed_to_the_largest_and_nodata_is_background(frames, tmp_path):
    out = tmp_path / "timelapse.gif"
    timelapse(frames, str(out))
    shown = decoded(out)
    assert [info["duration"] for _, info in shown] == [800, 800, 800]
    red, green, blue = (pixels for pixels, _ in shown)
    # 160 x 120 is 240 x 180 scaled by 1.5: it fills the frame; its nodata corner is background.
    assert close(red[170, 120], RED) and close(red[178, 238], BACKGROUND)
    # 90 x 90 fits as 180 x 180, centred: 30-pixel bars left and right.
    assert close(blue[90, 120], BLUE) and close(blue[170, 10], BACKGROUND) and close(blue[170, 230], BACKGROUND)
    assert close(blue[100, 35], BLUE) and close(blue[100, 25], BACKGROUND)
    # The largest is not scaled: its own nodata corner stays 10 x 10.
    assert close(green[175, 235], BACKGROUND) and close(green[165, 225], GREEN)


def test_the_label_is_what_differs_from_the_bare_frame():
    bare = Image.new("RGB", (240, 180), RED)
    pixels, plain = np.asarray(labelled(bare, "2023-Q1", label_font(180))), np.asarray(bare)
    changed = np.argwhere((pixels != plain).any(axis=2))
    assert len(changed) > 300
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert top < 10 and left < 10 and bottom < 40 and right < 120  # only in the top-left corner
    assert label_font(180).size == 12 and label_font(1024).size == 64 and label_font(600).size == 38


def test_one_frame_or_none_writes_nothing(frames, tmp_path):
    out = tmp_path / "timelapse.gif"
    assert timelapse(frames[:1], str(out)) is None
    assert timelapse([], str(out)) is None
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["2023-01.png", "2023-02.png", "2023-03.png"]


def test_an_animated_webp_when_asked(frames, tmp_path):
    out = tmp_path / "timelapse.webp"
    assert timelapse(frames, str(out), frame_ms=300) == str(out)
    with Image.open(out) as image:
        assert image.format == "WEBP" and image.n_frames == 3 and image.info["loop"] == 0
    shown = decoded(out)
    assert [info["duration"] for _, info in shown] == [300, 300, 300]
    assert [close(dominant(pixels), colour, 20) for (pixels, _), (_, colour, _) in zip(shown, QUICKLOOKS)] == [True] * 3


def test_bad_arguments_are_refused(frames, tmp_path):
    with pytest.raises(InvalidRequest, match="gif or a .webp"):
        timelapse(frames, str(tmp_path / "t.png"))
    with pytest.raises(InvalidRequest, match="frame_ms"):
        timelapse(frames, str(tmp_path / "t.gif"), frame_ms=0)
    with pytest.raises(InvalidRequest, match="pair"):
        timelapse([frames[0][1], frames[1]], str(tmp_path / "t.gif"))
    with pytest.raises(InvalidRequest, match="empty label"):
        timelapse([(" ", frames[0][1]), frames[1]], str(tmp_path / "t.gif"))
    with pytest.raises(FileNotFoundError):
        timelapse([frames[0], ("2023-04", str(tmp_path / "missing.png"))], str(tmp_path / "t.gif"))
    assert not (tmp_path / "t.gif").exists() and not list(tmp_path.glob(".tmp-*"))
