"""Inline thumbnails (Pillow, the optional ``images`` extra): small, JPEG, and none for a
file that is not an image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from p2pchat.blobs.thumbs import MAX_EDGE, make_thumbnail
from p2pchat.protocol.content import MAX_THUMB_BYTES


def test_a_large_noisy_picture_gets_a_small_jpeg_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    image = Image.effect_noise((480, 270), 80).convert("RGB")
    image.save(path)
    made = make_thumbnail(path)
    assert made is not None
    jpeg, width, height = made
    assert (width, height) == (480, 270)
    assert len(jpeg) <= MAX_THUMB_BYTES
    assert jpeg.startswith(b"\xff\xd8")
    (tmp_path / "t.jpg").write_bytes(jpeg)
    with Image.open(tmp_path / "t.jpg") as shown:
        assert max(shown.size) <= MAX_EDGE


def test_no_thumbnail_for_what_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_bytes(b"not a picture at all")
    assert make_thumbnail(path) is None
