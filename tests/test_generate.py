"""Generation requests, generated sets (resume, manifest, deletions, export) and the world renderer."""

from __future__ import annotations

import errno
import json
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import store
from core.datasets.base import TorchView
from core.errors import Cancelled, InvalidInputError, UnknownNameError
from core.fix.generators import (
    GENERATORS,
    GeneratedSet,
    GenerationError,
    Generator,
    GenSpec,
    baseline_for,
    create_generator,
    generate_set,
    image_seed,
    list_sets,
    mode_requests,
    random_requests,
    read_manifest,
)
from core.world.generator import WorldRenderer


class SeedPainter(Generator):
    """Each image is a function of its seed alone; counts the images it was asked for."""

    name, backend, max_batch_size = "painter", "test", 2

    def __init__(self, model_id: str = "painter-v1", fail_on_call: int | None = None, shade: int = 0):
        super().__init__()
        self.model_id, self.fail_on_call, self.shade = model_id, fail_on_call, shade
        self.calls, self.made = 0, []

    def config(self):
        return {"shade": self.shade}

    def generate_batch(self, prompts, seeds, specs, should_stop=None):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("painter jammed")
        self.made += list(seeds)
        self.last_info = [{} for _ in seeds]
        return [Image.fromarray(np.random.default_rng(s).integers(0, 256, (8, 8, 3), dtype=np.uint8)) for s in seeds]


def pixels(p) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


MODES = [("cat", 0, "desert"), ("cat", 0, "snow"), ("dog", 1, "sea")]


# ---- requests -------------------------------------------------------------------------------------------


def test_mode_requests_use_the_paper_prompt_and_keep_top_k_per_class():
    table = pd.DataFrame(MODES + [("cat", 0, "moon")], columns=["class_name", "label", "value"])
    reqs = mode_requests(table, 5, k=2)
    assert [(r.class_name, r.value, r.n_images) for r in reqs] == [
        ("cat", "desert", 5),
        ("cat", "snow", 5),
        ("dog", "sea", 5),
    ]
    assert reqs[0].prompt == "A photo of cat desert" and reqs[0].attribute == "background"
    custom = mode_requests(MODES, 1, attribute="colour", template="a {value} {class_name}")
    assert custom[2].prompt == "a sea dog" and custom[2].attribute == "colour"


def test_baseline_matches_images_per_class_with_class_name_prompts():
    base = baseline_for(mode_requests(MODES, 5))
    assert {(r.class_name, r.n_images, r.prompt, r.value) for r in base} == {
        ("cat", 10, "A photo of cat", None),
        ("dog", 5, "A photo of dog", None),
    }
    assert random_requests([("cat", 0)], 3, template="{class_name}, photo")[0].prompt == "cat, photo"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_zero_negative_or_fractional_counts_are_refused(bad):
    with pytest.raises(InvalidInputError):
        mode_requests(MODES, bad)
    with pytest.raises(InvalidInputError):
        mode_requests(MODES, 5, k=bad)
    with pytest.raises(InvalidInputError):
        random_requests([("cat", 0)], bad)
    with pytest.raises(InvalidInputError):
        GenSpec("cat", 0, "background", "sea", "A photo of cat sea", bad)


def test_bad_templates_and_half_modes_are_refused():
    with pytest.raises(InvalidInputError, match="class_name"):
        mode_requests(MODES, 1, template="A photo of {clas}")
    with pytest.raises(InvalidInputError):
        GenSpec("cat", 0, "background", None, "A photo of cat", 1)
    with pytest.raises(InvalidInputError, match="no value"):
        mode_requests(pd.DataFrame({"class_name": ["cat"], "label": [0], "value": [float("nan")]}), 1)


def test_image_seeds_are_deterministic_and_distinct():
    a = image_seed(0, "cat", "desert", 0)
    assert a == image_seed(0, "cat", "desert", 0)
    others = {
        image_seed(1, "cat", "desert", 0),
        image_seed(0, "cat", "snow", 0),
        image_seed(0, "cat", "desert", 1),
        image_seed(0, "cat", None, 0),
        image_seed(0, "dog", "desert", 0),
    }
    assert a not in others and len(others) == 5


# ---- generated sets -------------------------------------------------------------------------------------


def test_set_writes_images_manifest_and_seeds(fresh_cache):
    gen = SeedPainter()
    reqs = mode_requests(MODES, 2) + baseline_for(mode_requests(MODES, 2))
    seen = []
    gset = generate_set(gen, reqs, "s1", seed=7, progress=lambda d, t, m: seen.append((d, t)))
    df = gset.manifest()
    assert len(df) == 12 and seen[-1] == (12, 12) and not df["deleted"].any()
    assert (fresh_cache / "generated" / "s1" / "manifest.csv").is_file()
    row = df[(df["class_name"] == "dog") & (df["value"] == "sea") & (df["index"] == 1)].iloc[0]
    assert row["seed"] == image_seed(7, "dog", "sea", 1) and str(row["seed"]) in row["file"]
    assert row["prompt"] == "A photo of dog sea" and row["model_id"] == "painter-v1" and row["backend"] == "test"
    assert df[df["value"].isna()]["attribute"].isna().all() and (df["value"].isna().sum() == 6)
    expected = np.random.default_rng(int(row["seed"])).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(pixels(gset.path(row["image_id"])), expected)
    assert set(gset.groups()) == {("cat", "desert"), ("cat", "snow"), ("dog", "sea"), ("cat", None), ("dog", None)}
    assert list_sets() == ["s1"]
    # A generated set is a dataset: it feeds TorchView like any other.
    view = TorchView(gset, gset.index())
    img, label = view[len(view) - 1]
    assert img.size == (8, 8) and label == int(gset.index()["label"].iloc[-1])


def test_stopped_run_resumes_without_redoing_images(fresh_cache):
    reqs = mode_requests(MODES, 3)  # 9 images, batches of 2
    first = SeedPainter()
    with pytest.raises(Cancelled):
        generate_set(first, reqs, "s", should_stop=lambda: first.calls >= 2)
    assert len(read_manifest(fresh_cache / "generated" / "s")) == 4
    before = {p.name: p.read_bytes() for p in (fresh_cache / "generated" / "s" / "images").iterdir()}
    second = SeedPainter()
    gset = generate_set(second, reqs, "s")
    assert len(second.made) == 5 and set(second.made).isdisjoint(first.made)
    assert len(gset.index()) == 9
    assert all((fresh_cache / "generated" / "s" / "images" / n).read_bytes() == b for n, b in before.items())
    third = SeedPainter()
    generate_set(third, reqs, "s")
    assert third.calls == 0


def test_files_written_before_a_hard_stop_are_adopted_not_redone(fresh_cache):
    reqs = mode_requests(MODES[:1], 2)
    generate_set(SeedPainter(), reqs, "s")
    root = fresh_cache / "generated" / "s"
    df = read_manifest(root)
    df.iloc[:1].to_csv(root / "manifest.csv", index=False)  # as if killed after the PNG, before the manifest
    again = SeedPainter()
    assert len(generate_set(again, reqs, "s").index()) == 2 and again.calls == 0


class InfoPainter(SeedPainter):
    """Reports per-image info (as the world renderer reports its ground truth)."""

    def generate_batch(self, prompts, seeds, specs, should_stop=None):
        images = super().generate_batch(prompts, seeds, specs, should_stop)
        self.last_info = [{"digit_index": s % 97, "background": sp.value} for s, sp in zip(seeds, specs)]
        return images


def test_an_adopted_image_keeps_the_generators_info(fresh_cache):
    reqs = mode_requests(MODES[:1], 2)
    generate_set(InfoPainter(), reqs, "s")
    root = fresh_cache / "generated" / "s"
    full = read_manifest(root)
    assert full["info"].notna().all()
    full.iloc[:1].to_csv(root / "manifest.csv", index=False)  # as if killed after the PNG, before the manifest
    generate_set(InfoPainter(), reqs, "s")
    pd.testing.assert_frame_equal(read_manifest(root).drop(columns="created_at"), full.drop(columns="created_at"))


def test_deleted_images_stay_deleted_and_can_be_restored(fresh_cache):
    reqs = mode_requests(MODES, 2)
    gset = generate_set(SeedPainter(), reqs, "s")
    victim = gset.groups()[("cat", "snow")][0]
    key_before = gset.key
    live = gset.path(victim)
    assert gset.delete([victim]) == 1
    assert not live.exists() and gset.path(victim).parent.name == "trash" and gset.path(victim).is_file()
    assert victim not in set(gset.index()["image_id"]) and gset.key != key_before
    assert gset.counts().set_index(["class_name", "value"]).loc[("cat", "snow"), "deleted"] == 1
    again = SeedPainter()
    generate_set(again, reqs, "s")
    assert again.calls == 0 and not live.exists()
    manifest = gset.manifest()
    assert len(manifest) == 6 and manifest.set_index("image_id").loc[victim, "deleted"]
    assert gset.restore([victim]) == 1 and live.is_file() and gset.key == key_before
    with pytest.raises(InvalidInputError, match="no images"):
        gset.delete(["not-an-id"])


def test_a_set_never_mixes_generators_settings_or_seeds(fresh_cache):
    reqs = mode_requests(MODES[:1], 1)
    generate_set(SeedPainter(), reqs, "s", seed=0)
    for other, seed in ((SeedPainter(model_id="painter-v2"), 0), (SeedPainter(shade=1), 0), (SeedPainter(), 1)):
        with pytest.raises(InvalidInputError, match="never mixes"):
            generate_set(other, reqs, "s", seed=seed)
    with pytest.raises(InvalidInputError, match="prompt"):
        generate_set(SeedPainter(), mode_requests(MODES[:1], 1, template="{class_name} in {value}"), "s")
    assert len(read_manifest(fresh_cache / "generated" / "s")) == 1


def test_set_inputs_are_checked(fresh_cache):
    reqs = mode_requests(MODES[:1], 1)
    for name in ("../escape", "", "a b"):
        with pytest.raises(InvalidInputError):
            generate_set(SeedPainter(), reqs, name)
    with pytest.raises(InvalidInputError, match="twice"):
        generate_set(SeedPainter(), reqs + reqs, "s")
    with pytest.raises(InvalidInputError, match="empty"):
        generate_set(SeedPainter(), [], "s")
    with pytest.raises(InvalidInputError):
        generate_set(SeedPainter(), reqs, "s", batch_size=0)
    with pytest.raises(InvalidInputError, match="No generated set"):
        GeneratedSet("never-made")


def test_generator_failure_keeps_finished_images_and_resumes(fresh_cache):
    reqs = mode_requests(MODES, 2)
    with pytest.raises(GenerationError, match="painter jammed.*kept"):
        generate_set(SeedPainter(fail_on_call=2), reqs, "s")
    assert len(GeneratedSet("s").index()) == 2
    rest = SeedPainter()
    assert len(generate_set(rest, reqs, "s").index()) == 6 and len(rest.made) == 4


def test_disk_errors_are_reported_and_written_images_kept(fresh_cache, monkeypatch):
    reqs = mode_requests(MODES, 2)
    real, pngs = store.atomic_write_bytes, []

    def full_disk(p, data):
        if str(p).endswith(".png"):
            pngs.append(p)
            if len(pngs) == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(p, data)

    monkeypatch.setattr(store, "atomic_write_bytes", full_disk)
    with pytest.raises(GenerationError, match="No space left on device.*kept"):
        generate_set(SeedPainter(), reqs, "s")
    monkeypatch.setattr(store, "atomic_write_bytes", real)
    assert len(GeneratedSet("s").index()) == 3  # the batch's first image was written before the disk filled
    rest = SeedPainter()
    assert len(generate_set(rest, reqs, "s").index()) == 6 and len(rest.made) == 3


def test_unwritable_image_folder_is_a_clear_error(fresh_cache):
    root = fresh_cache / "generated" / "s"
    root.mkdir(parents=True)
    (root / "images").write_text("a file where the image folder belongs")
    with pytest.raises(GenerationError, match="Could not write"):
        generate_set(SeedPainter(), mode_requests(MODES[:1], 1), "s")


def test_a_set_being_generated_is_not_generated_twice(fresh_cache):
    root = fresh_cache / "generated" / "s"
    root.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def hold():
        with store.lock(root / "generating"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(InvalidInputError, match="another job"):
            generate_set(SeedPainter(), mode_requests(MODES[:1], 1), "s")
    finally:
        release.set()
        t.join()


def test_registry_builds_generators_and_names_close_ones():
    assert {"diffusers", "sd-turbo", "world"} <= set(GENERATORS)
    with pytest.raises(UnknownNameError, match="diffusers"):
        create_generator("difusers")
    turbo = create_generator("sd-turbo", device="cpu")
    assert (turbo.model_id, turbo.steps, turbo.guidance, turbo.height) == ("stabilityai/sd-turbo", 1, 0.0, 512)
    assert create_generator("sd-turbo", device="cpu", num_inference_steps=4).config()["num_inference_steps"] == 4
    sd = create_generator("diffusers", device="cpu")
    assert (sd.model_id, sd.steps, sd.guidance) == ("stable-diffusion-v1-5/stable-diffusion-v1-5", 50, 7.5)


# ---- world renderer -------------------------------------------------------------------------------------


class FakeWorld:
    """The offline world's renderer contract: render(label, background=, colour=, seed=) -> (image, truth)."""

    classes, backgrounds, colours, key = ["zero", "one"], ["grass", "brick wall"], ["red", "blue"], "fake-world"

    def __init__(self):
        self.calls = []

    def render(self, label, background=None, colour=None, seed=0):
        self.calls.append((label, background, colour, seed))
        for v, options in ((background, self.backgrounds), (colour, self.colours)):
            if v is not None and v not in options:
                raise InvalidInputError(f"cannot render {v!r}; renderable: {', '.join(options)}")
        rng = np.random.default_rng(seed)
        bg = background or self.backgrounds[label]
        return (
            Image.fromarray(np.full((8, 8, 3), 40 * label + 10 * len(bg), np.uint8)),
            {"label": label, "background": bg, "colour": colour or rng.choice(self.colours)},
        )


def test_world_renderer_maps_attributes_to_render_calls(fresh_cache):
    world = FakeWorld()
    gen = WorldRenderer(world=world)
    reqs = (
        mode_requests([("one", 1, "brick wall")], 2)
        + mode_requests([("zero", 0, "blue")], 1, attribute="colour")
        + random_requests([("zero", 0)], 1)
    )
    gset = generate_set(gen, reqs, "w")
    calls = {(c[0], c[1], c[2]) for c in world.calls}
    assert calls == {(1, "brick wall", None), (0, None, "blue"), (0, None, None)}
    df = gset.manifest()
    truth = [json.loads(i) for i in df["info"]]
    assert [t["background"] for t in truth[:2]] == ["brick wall"] * 2 and truth[2]["colour"] == "blue"
    assert df["backend"].eq("world").all() and df["model_id"].eq("scenes-mnist()").all()


def test_world_renderer_names_renderable_values():
    gen = WorldRenderer(world=FakeWorld())
    with pytest.raises(InvalidInputError, match="grass, brick wall"):
        gen.validate(mode_requests([("one", 1, "desert")], 1))
    with pytest.raises(InvalidInputError, match="background.*colour"):
        gen.validate(mode_requests([("one", 1, "round")], 1, attribute="shape"))
    with pytest.raises(InvalidInputError, match="zero"):
        gen.validate(mode_requests([("seven", 7, "grass")], 1))


@pytest.mark.slow
def test_real_world_renders_the_requested_value(session_cache):
    gen = create_generator("world", size="tiny")
    world = gen.world
    bg, col = world.backgrounds[-1], world.colours[-1]
    reqs = (
        mode_requests([(world.classes[2], 2, bg)], 2)
        + mode_requests([(world.classes[3], 3, col)], 2, attribute="colour")
        + random_requests([(world.classes[4], 4)], 2)
    )
    gset = generate_set(gen, reqs, "world-truth-test", seed=3)
    df = gset.manifest()
    truth = [json.loads(i) for i in df["info"]]
    assert [t["background"] for t in truth[:2]] == [bg, bg]
    assert [t["colour"] for t in truth[2:4]] == [col, col]
    assert all(t["label"] == lab for t, lab in zip(truth, df["label"]))
    img = gset.load(df["image_id"].iloc[0])
    again, _ = world.render(2, background=bg, seed=int(df["seed"].iloc[0]))
    assert np.array_equal(np.asarray(img), np.asarray(again.convert("RGB")))
    with pytest.raises(InvalidInputError, match=world.backgrounds[0]):
        gen.validate(mode_requests([(world.classes[2], 2, "inside a volcano")], 1))
