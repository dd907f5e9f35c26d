"""The diffusers generator on a tiny random Stable Diffusion pipeline saved to disk and loaded back.

Counts UNet calls to show what was (not) recomputed: each denoising step of a batch of B images runs the
UNet once on 2·B latents (classifier-free guidance).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import Cancelled, InvalidInputError, MissingResourceError
from core.fix.generators import (
    GeneratedSet,
    GenerationError,
    create_generator,
    generate_set,
    mode_requests,
    read_manifest,
)
from tests.tiny_diffusers import TINY_SIZE, TINY_STEPS, build_tiny_pipeline

MODES = [("cat", 0, "desert"), ("dog", 1, "snow")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_pipe(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("diffusers") / "tiny-sd")


def make_gen(folder, **kw):
    kw = {"num_inference_steps": TINY_STEPS, "height": TINY_SIZE, "width": TINY_SIZE, "batch_size": 2, **kw}
    return create_generator("diffusers", model_id=str(folder), device="cpu", **kw)


def unet_counter(gen, fail_on_call: int | None = None) -> list[int]:
    """Batch size of every UNet call on the generator's pipeline; optionally raise on one call."""
    gen.prepare()
    calls: list[int] = []

    def hook(module, args, kwargs):
        calls.append(int(args[0].shape[0]))
        if len(calls) == fail_on_call:
            raise RuntimeError("simulated device failure")

    gen.pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def images_denoised(calls: list[int]) -> float:
    return sum(calls) / (2 * TINY_STEPS)


def pixels(p) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


def test_loads_a_saved_pipeline_through_the_auto_pipeline(tiny_pipe):
    import torch

    gen = make_gen(tiny_pipe)
    gen.prepare()
    assert type(gen.pipe).__name__ == "StableDiffusionPipeline" and gen.pipe.unet.dtype == torch.float32
    imgs = gen.generate_batch(["A photo of cat desert"], [3], [])
    assert imgs[0].size == (TINY_SIZE, TINY_SIZE) and gen.steps_run == TINY_STEPS


def test_seeds_reproduce_images_whatever_the_batch(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES, 2)
    a = generate_set(make_gen(tiny_pipe, batch_size=3), reqs, "a", seed=5)
    b = generate_set(make_gen(tiny_pipe, batch_size=1), reqs, "b", seed=5)
    ma, mb = a.manifest(), b.manifest()
    assert list(ma["seed"]) == list(mb["seed"]) and ma["seed"].nunique() == 4
    for ia, ib in zip(ma["image_id"], mb["image_id"]):
        assert np.array_equal(pixels(a.path(ia)), pixels(b.path(ib)))
    first, second = (pixels(a.path(i)) for i in ma["image_id"][:2])
    assert not np.array_equal(first, second)
    row = ma.iloc[3]
    again = make_gen(tiny_pipe).generate_batch([row["prompt"]], [int(row["seed"])], [])[0]
    assert np.array_equal(np.asarray(again), pixels(a.path(row["image_id"])))


def test_stopped_run_resumes_without_redoing_images(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES, 3)  # 6 images in batches of 2
    images = fresh_cache / "generated" / "s" / "images"
    gen = make_gen(tiny_pipe)
    calls = unet_counter(gen)
    with pytest.raises(Cancelled):
        generate_set(gen, reqs, "s", should_stop=lambda: images.is_dir() and len(list(images.glob("*.png"))) >= 2)
    assert images_denoised(calls) == 2 and len(read_manifest(images.parent)) == 2
    kept = {p.name: p.read_bytes() for p in images.glob("*.png")}
    gen2 = make_gen(tiny_pipe)
    calls2 = unet_counter(gen2)
    gset = generate_set(gen2, reqs, "s")
    assert images_denoised(calls2) == 4 and len(gset.index()) == 6
    assert all((images / n).read_bytes() == data for n, data in kept.items())


def test_should_stop_interrupts_between_denoising_steps(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES, 2)  # 2 batches of 2
    gen = make_gen(tiny_pipe)
    calls = unet_counter(gen)
    # Batch 1 runs its 2 steps; batch 2 is stopped after its first step.
    with pytest.raises(Cancelled, match="denoising"):
        generate_set(gen, reqs, "s", should_stop=lambda: len(calls) >= TINY_STEPS + 1)
    assert len(calls) == TINY_STEPS + 1 and gen.steps_run == TINY_STEPS + 1
    gset = GeneratedSet("s")
    assert len(gset.index()) == 2 and len(list((gset.root / "images").glob("*.png"))) == 2
    gen2 = make_gen(tiny_pipe)
    calls2 = unet_counter(gen2)
    assert len(generate_set(gen2, reqs, "s").index()) == 4 and images_denoised(calls2) == 2


def test_deleted_images_are_not_regenerated(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES, 2)
    gset = generate_set(make_gen(tiny_pipe), reqs, "s")
    victims = list(gset.index()["image_id"][:3])
    gset.delete(victims)
    gen = make_gen(tiny_pipe)
    calls = unet_counter(gen)
    after = generate_set(gen, reqs, "s")
    assert calls == [] and len(after.index()) == 1
    assert {r for r in after.manifest()["image_id"] if (after.root / "images" / f"{r}.png").exists()} == set(
        after.index()["image_id"]
    )


def test_failure_mid_batch_keeps_earlier_images(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES, 2)
    gen = make_gen(tiny_pipe)
    unet_counter(gen, fail_on_call=TINY_STEPS + 1)  # first step of the second batch
    with pytest.raises(GenerationError, match="simulated device failure.*kept"):
        generate_set(gen, reqs, "s")
    assert len(GeneratedSet("s").index()) == 2
    gen2 = make_gen(tiny_pipe)
    calls = unet_counter(gen2)
    assert len(generate_set(gen2, reqs, "s").index()) == 4 and images_denoised(calls) == 2


def test_safety_checker_blacked_out_images_are_dropped_and_counted(fresh_cache, tmp_path):
    folder = build_tiny_pipeline(tmp_path / "flagging-sd", safety_checker=True)
    reqs = mode_requests(MODES[:1], 2)
    gset = generate_set(make_gen(folder), reqs, "s")
    df = gset.manifest()
    assert len(df) == 2 and df["file"].isna().all() and df["dropped_reason"].str.contains("safety").all()
    assert len(gset.index()) == 0 and gset.counts()["dropped"].tolist() == [2]
    gen = make_gen(folder)
    calls = unet_counter(gen)
    generate_set(gen, reqs, "s")
    assert calls == []  # the same seeds would be flagged again


def test_missing_hub_model_offline_says_what_to_download(fresh_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = create_generator("diffusers", model_id="backdrop-tests/no-such-pipeline", device="cpu")
    with pytest.raises(
        MissingResourceError, match="(?s)huggingface.co/backdrop-tests/no-such-pipeline.*save_pretrained"
    ):
        generate_set(gen, mode_requests(MODES, 1), "s")
    assert not (fresh_cache / "generated" / "s" / "set.json").exists()  # the name stays free for another model


def test_local_folder_without_a_pipeline_is_invalid(tmp_path):
    with pytest.raises(InvalidInputError, match="model_index.json"):
        create_generator("diffusers", model_id=str(tmp_path), device="cpu").prepare()
    with pytest.raises(InvalidInputError):
        create_generator("diffusers", model_id=str(tmp_path), num_inference_steps=0)
    with pytest.raises(InvalidInputError):
        create_generator("diffusers", model_id=str(tmp_path), height=30)


def test_resuming_with_other_sampling_settings_is_refused(fresh_cache, tiny_pipe):
    reqs = mode_requests(MODES[:1], 1)
    generate_set(make_gen(tiny_pipe), reqs, "s")
    with pytest.raises(InvalidInputError, match="num_inference_steps"):
        generate_set(make_gen(tiny_pipe, num_inference_steps=3), reqs, "s")
