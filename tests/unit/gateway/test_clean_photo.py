"""Uploaded photos lose their metadata (GPS, serials, comments) and stand upright; clean ones stay byte-identical."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from services.gateway.photo_metadata import carries_metadata
from services.gateway.uploads import check_photo, clean_photo

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 4_000_000, "min_side": 64}
GPS_LATITUDE = (52.0, 22.0, 12.345)
SERIAL = "SN-0451-PRIVATE"
RED, BLUE = (230, 20, 20), (20, 20, 230)


def marked(size: tuple[int, int] = (160, 100)) -> Image.Image:
    """Blue, with a red block in the top-left corner (to see where the top of the photo went)."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, 40, 40))
    return image


def phone_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif.get_ifd(0x8769)[0xA431] = SERIAL  # Exif IFD: BodySerialNumber
    exif.get_ifd(0x8825).update({1: "N", 2: GPS_LATITUDE, 3: "E", 4: (4.0, 53.0, 40.5)})  # GPS IFD
    return exif


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def colour_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return image.convert("RGB").getpixel(xy)


def near(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(colour, expected, strict=True))


def assert_no_exif(data: bytes) -> None:
    image = opened(data)
    assert not image.getexif() and "exif" not in image.info
    assert b"Exif" not in data and b"EXIF" not in data
    assert SERIAL.encode() not in data and b"PhoneMaker" not in data


def test_a_phone_jpeg_loses_its_gps_and_serial_and_stands_upright() -> None:
    photo = encode(marked(), "JPEG", quality=90, exif=phone_exif(orientation=6).tobytes())
    assert opened(photo).getexif().get_ifd(0x8825)  # the fixture really carries GPS

    cleaned = clean_photo(photo)

    assert_no_exif(cleaned)
    image = opened(cleaned)
    assert image.format == "JPEG" and image.size == (100, 160)  # turned a quarter: width and height swapped
    # Orientation 6 means "turn 90° clockwise to view": the stored top-left corner is now top-right.
    assert near(colour_at(image, (80, 15)), RED) and near(colour_at(image, (15, 15)), BLUE)
    assert check_photo(cleaned, **LIMITS).media_type == "image/jpeg"


def test_cleaning_is_stable_so_the_content_address_is_too() -> None:
    cleaned = clean_photo(encode(marked(), "JPEG", exif=phone_exif().tobytes()))
    assert clean_photo(cleaned) == cleaned
    assert clean_photo(encode(marked(), "JPEG", exif=phone_exif().tobytes())) == cleaned


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_without_metadata_comes_back_byte_identical(fmt: str) -> None:
    photo = encode(marked(), fmt)
    assert not carries_metadata(photo, Image.MIME[fmt])
    assert clean_photo(photo) == photo


def test_a_png_loses_its_text_chunks_and_keeps_its_pixels() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "52.3702 N, 4.8952 E")
    info.add_text("Raw profile type exif", "exif\n  8\n45786966000049492a00")
    photo = encode(marked(), "PNG", pnginfo=info)

    cleaned = clean_photo(photo)

    image = opened(cleaned)
    assert image.format == "PNG" and image.text == {}
    assert b"tEXt" not in cleaned and b"52.3702" not in cleaned
    assert image.tobytes() == opened(photo).tobytes()


def test_a_png_with_exif_orientation_is_turned() -> None:
    photo = encode(marked(), "PNG", exif=phone_exif(orientation=8).tobytes())
    cleaned = clean_photo(photo)
    assert_no_exif(cleaned)
    image = opened(cleaned)
    # Orientation 8 means "turn 90° counter-clockwise to view": the top-left corner becomes bottom-left.
    assert image.size == (100, 160) and colour_at(image, (15, 150)) == RED


def test_a_webp_with_exif_loses_it() -> None:
    photo = encode(marked(), "WEBP", quality=90, exif=phone_exif(orientation=1).tobytes())
    assert b"EXIF" in photo

    cleaned = clean_photo(photo)

    assert_no_exif(cleaned)
    image = opened(cleaned)
    assert image.format == "WEBP" and image.size == (160, 100)
    assert near(colour_at(image, (10, 10)), RED)


def test_a_lossless_webp_stays_lossless() -> None:
    photo = encode(marked(), "WEBP", lossless=True, exif=phone_exif(orientation=1).tobytes())
    cleaned = clean_photo(photo)
    assert b"VP8L" in cleaned and b"EXIF" not in cleaned
    assert opened(cleaned).tobytes() == opened(photo).tobytes()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(("name", "make"), [
    ("comment", lambda: encode(marked(), "JPEG", comment=b"shot at 12 Elm Street")),
    ("xmp", lambda: encode(marked(), "JPEG", xmp=b"<x:xmpmeta><exif:GPSLatitude>52,22N</exif:GPSLatitude>"
                                                  b"</x:xmpmeta>")),
    ("icc", lambda: encode(marked(), "JPEG", icc_profile=srgb_profile())),
    ("trailer", lambda: encode(marked(), "JPEG") + b"\x00\x00\x00\x18ftypmp42 a motion-photo video"),
    ("png icc", lambda: encode(marked(), "PNG", icc_profile=srgb_profile())),
    ("png trailer", lambda: encode(marked(), "PNG") + b"hidden after IEND"),
    ("webp xmp", lambda: encode(marked(), "WEBP", xmp=b"<x:xmpmeta>52,22N</x:xmpmeta>")),
    ("webp icc", lambda: encode(marked(), "WEBP", icc_profile=srgb_profile())),
])
def test_every_kind_of_metadata_is_dropped(name: str, make) -> None:
    photo = make()
    assert carries_metadata(photo, opened(photo).get_format_mimetype())
    cleaned = clean_photo(photo)
    assert cleaned != photo and not carries_metadata(cleaned, opened(cleaned).get_format_mimetype())
    for secret in (b"Elm Street", b"52,22N", b"motion-photo", b"hidden after IEND", b"ICC_PROFILE", b"iCCP",
                   b"ICCP", b"XMP"):
        assert secret not in cleaned, (name, secret)
    assert opened(cleaned).info.get("icc_profile") is None


def test_a_file_that_cannot_be_walked_counts_as_carrying_metadata() -> None:
    assert carries_metadata(b"\xff\xd8\xff\xe0\x00", "image/jpeg")
    assert carries_metadata(b"\x89PNG\r\n\x1a\n\x00\x00", "image/png")
    assert carries_metadata(b"RIFF\xff\x00\x00\x00WEBPVP8 ", "image/webp")
    with pytest.raises(ValueError):
        clean_photo(b"GIF89a")
