"""Upload parsing and photo checks; thumbnails, perceptual hashes, placeholders and previews."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from services.gateway.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMedia,
)
from services.gateway.images import (
    ByteCache,
    dhash,
    hamming,
    placeholder_avatar,
    preview_data_url,
    sniff_media_type,
    thumbnail,
)
from services.gateway.routers.chains import with_seed
from services.gateway.uploads import check_photo, parse_multipart

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000, "min_side": 64}


def encoded(fmt: str, size=(128, 96), mode="RGB", colour=(200, 120, 40)) -> bytes:
    out = io.BytesIO()
    image = Image.new(mode, size, colour)
    for x in range(0, size[0], 4):  # some structure, so hashes have something to see
        image.putpixel((x, x % size[1]), (0, 0, 0) if mode == "RGB" else 0)
    image.save(out, format=fmt)
    return out.getvalue()


def body(*parts: tuple[str, bytes, str | None]) -> bytes:
    chunks = []
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + b"--XyZ--\r\n"


def test_a_multipart_form_is_split_into_its_fields() -> None:
    image = encoded("PNG") + b"\r\n--XyZ-not-a-boundary"
    parts = parse_multipart("multipart/form-data; boundary=XyZ",
                            body(("name", "Zoë".encode(), None), ("image", image, 'we\\"ird.png')))
    assert parts["name"].text() == "Zoë"
    assert parts["image"].data == image and parts["image"].filename == 'we"ird.png'


@pytest.mark.parametrize(("content_type", "raw", "error"), [
    ("application/json", b"{}", UnsupportedMedia),
    ("multipart/form-data", b"--x--", BadRequest),
    ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n", BadRequest),
    ("multipart/form-data; boundary=XyZ", body(("a", b"1", None), ("a", b"2", None)), BadRequest),
    ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno headers end\r\n--XyZ--", BadRequest),
])
def test_malformed_multipart_is_refused(content_type: str, raw: bytes, error: type) -> None:
    with pytest.raises(error):
        parse_multipart(content_type, raw)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_the_three_formats_pass_by_content(fmt: str) -> None:
    check = check_photo(encoded(fmt), **LIMITS)
    assert (check.media_type, check.width, check.height) == (f"image/{fmt.lower()}", 128, 96)


def test_what_is_not_a_sane_photo_is_refused_with_the_reason() -> None:
    cases = [
        (b"GIF89a" + bytes(100), UnsupportedMedia, "unsupported_image"),
        (encoded("GIF"), UnsupportedMedia, "unsupported_image"),
        (encoded("BMP"), UnsupportedMedia, "unsupported_image"),
        (b"", Unprocessable, "empty_file"),
        (encoded("PNG", size=(32, 200)), Unprocessable, "image_too_small"),
        (encoded("PNG")[:60], Unprocessable, "damaged_image"),
        (encoded("PNG", size=(5000, 5000), mode="1", colour=0), PayloadTooLarge, "decompression_bomb"),
        (b"\xff\xd8\xff" + bytes(2_000_000), PayloadTooLarge, "file_too_large"),
    ]
    for data, error, code in cases:
        with pytest.raises(error) as caught:
            check_photo(data, **LIMITS)
        assert caught.value.code == code, (code, caught.value.detail)


def test_a_big_but_honest_photo_is_over_the_pixel_limit_not_a_bomb() -> None:
    noise = Image.effect_noise((1100, 1000), 120).convert("RGB")
    out = io.BytesIO()
    noise.save(out, format="JPEG", quality=90)
    with pytest.raises(PayloadTooLarge) as caught:
        check_photo(out.getvalue(), max_bytes=10_000_000, max_pixels=1_000_000, min_side=64)
    assert caught.value.code == "too_many_pixels"


def test_sniffing_ignores_names_and_reads_signatures() -> None:
    assert sniff_media_type(encoded("PNG")) == "image/png"
    assert sniff_media_type(encoded("JPEG")) == "image/jpeg"
    assert sniff_media_type(encoded("WEBP")) == "image/webp"
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WAVE") is None


def test_a_thumbnail_is_a_small_webp() -> None:
    thumb = thumbnail(encoded("PNG", size=(800, 400)), 256)
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "WEBP" and image.size == (256, 128)


def test_dhash_is_stable_under_scaling_and_tells_different_pictures_apart() -> None:
    base = Image.effect_noise((128, 128), 80).convert("RGB")

    def png(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    same = dhash(png(base))
    assert len(same) == 16 and dhash(png(base)) == same
    assert hamming(same, dhash(png(base.resize((256, 256))))) <= 6
    other = Image.effect_noise((128, 128), 80).convert("RGB").rotate(90)
    assert hamming(same, dhash(png(other))) > 12


def test_a_placeholder_avatar_is_an_svg_with_the_escaped_initial() -> None:
    svg = placeholder_avatar("x", "<b>ob").decode()
    assert svg.startswith("<svg") and "&lt;" in svg and "<b>" not in svg
    assert placeholder_avatar("x", "a") == placeholder_avatar("x", "a")


def test_previews_pass_through_when_small_and_shrink_when_large() -> None:
    small = base64.b64encode(encoded("JPEG")).decode()
    assert preview_data_url("image/jpeg", small, 10_000) == f"data:image/jpeg;base64,{small}"
    big_image = Image.effect_noise((1024, 1024), 100).convert("RGB")
    out = io.BytesIO()
    big_image.save(out, format="PNG")
    big = base64.b64encode(out.getvalue()).decode()
    shrunk = preview_data_url("image/png", big, 20_000)
    assert shrunk is not None and shrunk.startswith("data:image/jpeg;base64,") and len(shrunk) < 20_100
    assert preview_data_url("image/png", "AAAA" * 10_000, 100) is None


def test_the_byte_cache_evicts_the_least_recently_used_first() -> None:
    cache = ByteCache(10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.get("a")
    cache.put("c", b"1234")
    assert cache.get("b") is None and cache.get("a") == b"1234" and cache.get("c") == b"1234"
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("on a beach", "on a beach --seed 9"),
    ("on a beach --seed 5 -w 512", "on a beach -w 512 --seed 9"),
    ("-s 5 on a beach", "on a beach --seed 9"),
    ("on a beach --seed=5", "on a beach --seed 9"),
    ("a t-shirt -sleeve look", "a t-shirt -sleeve look --seed 9"),
])
def test_a_rerender_pins_the_seed_in_the_request(text: str, expected: str) -> None:
    assert with_seed(text, 9) == expected
