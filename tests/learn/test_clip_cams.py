
import numpy as np
import pytest
import torch

pytest.importorskip("open_clip")

from napari_samlabel.core.classes import ClassTable  # noqa: E402
from napari_samlabel.io.weak.cams import read_cam_npy  # noqa: E402
from napari_samlabel.learn import clip_cams as cc  # noqa: E402
from napari_samlabel.learn.synthetic import shapes_image  # noqa: E402

TINY = "samlabel-tiny-test"


@pytest.fixture(scope="module")
def clip():
    cc.register_config(TINY, cc.TINY_CONFIG)
    torch.manual_seed(0)  # open_clip initialises from the global generator
    return cc.build_clip(TINY)


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    imgs, present = [], []
    for _ in range(n):
        # 1 to 3 shapes: some classes are absent, which the contrastive loss needs
        im, lab = shapes_image(rng, 32, int(rng.integers(2, 5)))
        imgs.append(im)
        present.append([int(c) - 1 for c in np.unique(lab) if c])
    return imgs, present


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(cc.ClipCamError, match="nothing is downloaded"):
        cc.build_clip(TINY, tmp_path / "nope.pt")


@pytest.mark.slow
def test_prompt_learning_lowers_the_loss_and_only_the_contexts_change(clip):
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    learner = cc.PromptLearner(clip, TINY, ["square", "disc", "triangle"], n_ctx=4)
    ctx0 = [p.detach().clone() for p in learner.parameters()]
    imgs, present = data()
    x = torch.stack([cc.to_clip_tensor(im, 32) for im in imgs])
    target = torch.zeros(len(imgs), 3, dtype=torch.bool)
    for b, ks in enumerate(present):
        target[b, ks] = True

    def cls_loss():
        with torch.no_grad():
            return float(cc._cls_loss(learner, x, target))

    start = cls_loss()
    cfg = cc.CamConfig(n_ctx=4, epochs=5, batch_size=6, lr=0.5, warmup_epochs=0)
    hist = cc.learn_prompts(learner, imgs, present, cfg)
    assert cls_loss() < 0.85 * start
    assert hist["seg"][-1] < 0.95 * hist["seg"][0]
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    assert all(not torch.equal(a, b) for a, b in zip(ctx0, learner.parameters(), strict=True))
    assert all(not p.requires_grad for p in clip.parameters())


def test_cams_are_written_in_the_reader_format(clip, tmp_path):
    learner = cc.PromptLearner(clip, TINY, ["square", "disc", "triangle"], n_ctx=4)
    imgs, present = data(2)
    cams = cc.image_cams(learner, imgs[0], present[0])
    assert cams.shape == (len(present[0]), 32, 32)
    assert np.all(cams >= 0) and np.allclose(cams.reshape(len(cams), -1).max(1), 1)
    classes = ClassTable(("background", "square", "disc", "triangle"))
    cc.write_cams(tmp_path, "img0", cams, [classes.names[k + 1] for k in present[0]])
    weak = read_cam_npy(tmp_path / "img0.npy", classes)["img0"]
    assert weak.image_shape == (32, 32) and weak.kind == "cams"
    assert {o.class_id for o in weak.objects} <= {k + 1 for k in present[0]}
