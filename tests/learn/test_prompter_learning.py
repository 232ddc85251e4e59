"""The prompter learns: on coloured shapes with boxes only, through the tiny SAM.

With random SAM weights the masks mean nothing, but the image embedding still carries colour
and position, so a prompter trained on weak boxes must (a) drive its loss below half of where
it started and (b) name the class sets of most held-out images (7 possible non-empty sets;
chance 1/7), far better than an untrained prompter, every class included. Measured (60
images, 10 held out, 25 epochs, the paper's loss weights and Adam lr 1e-4, one core, about
35 s): the loss falls from 18.3 to 6.4; the held-out class sets are all right (1.00, every
class 1.0; training images 1.00), the untrained prompter's none (0.00). It can fail: with
one epoch the loss cannot fall; without the input standardisation below the loss still falls
(18.7 to 7.4) but the held-out class sets are right for 0.30 only. (With lr 2e-3, the
setting this test used before: loss 18.1 to 4.4, held-out 0.90; outside the test, 60 images
of data seeds 4 and 5 and training seed 1 gave 1.00 held out.)

What was wrong before (issue 18 follow-up): one class, the thin blue bar, was never learned
(its best query probability was the same on every image, present or not), so only a third
of the held-out class sets were right. The embedding carries the bar - a linear probe on the
mean-pooled cached embeddings, or a max over the prompter's own stem or encoder tokens, names
it on every held-out image - and neither the matching nor the loss was at fault: with the
Hungarian matching replaced by a fixed query per class and a plain multi-label loss, the
prompter still never learned the bar (1000 steps, held-out 0.69 = always "absent"). The cause
is the input: SAM's embedding is dominated by a per-channel offset that is the same at every
position (every token's cosine to the image's mean token is 0.84 on average, 0.91 after the
stem and encoder), so the decoder's cross-attention starts as a plain average over the
tokens, and a bar covering 1-4 % of the image hardly moves it and never gets the gradient to
sharpen the attention. The prompter now standardises the embedding per channel with the
training images' statistics (``Prompter.set_input_stats``, set by ``train``): on 200 images
(59 held out, lr 2e-3) held-out accuracy went from 0.61 to 1.00 with nothing else changed.
The matching cost's L1 term was already the mean over the 2 x 256 token values (0.6 on
average between teachers, against 10 for the class term), so matching is by class once
classes are learned.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_samlabel.learn.prompter import Prompter, PrompterConfig, load_prompter  # noqa: E402
from napari_samlabel.learn.prompter_data import read_weak_dataset  # noqa: E402
from napari_samlabel.learn.train_prompter import (  # noqa: E402
    TrainConfig,
    prepare_samples,
    train,
)
from tests.learn._synthetic import write_voc  # noqa: E402

SMALL = {"d_model": 64, "heads": 4, "encoder_layers": 1, "decoder_layers": 1,
         "feedforward": 128, "queries": 8, "dropout": 0.0}


def predicted_sets(model: Prompter, samples, threshold: float = 0.5) -> list[set[int]]:
    """The class set each sample's queries name.

    A query names its most probable class when that probability reaches ``threshold``
    (the ``--min-score`` of ``samlabel propose``).
    """
    model.eval()
    out = []
    for s in samples:
        with torch.no_grad():
            logits, _ = model(torch.from_numpy(s.features.astype(np.float32)))
        score, cls = logits[0].softmax(-1)[:, :-1].max(-1)
        out.append(set(cls[score >= threshold].tolist()))
    return out


def class_sets(model: Prompter, samples, threshold: float = 0.5) -> float:
    """Share of samples whose predicted class set equals the true one."""
    pred = predicted_sets(model, samples, threshold)
    hits = sum(p == set(s.classes.tolist()) for p, s in zip(pred, samples, strict=True))
    return hits / len(samples)


def class_presence(model: Prompter, samples, k: int) -> float:
    """Share of samples where class ``k`` is named exactly when it is present."""
    pred = predicted_sets(model, samples)
    hits = sum((k in p) == (k in s.classes.tolist()) for p, s in zip(pred, samples, strict=True))
    return hits / len(samples)


@pytest.mark.slow
def test_prompter_learns_class_sets_from_boxes(tmp_path, tiny_engine):
    torch.set_num_threads(1)
    voc = write_voc(tmp_path / "data", 60, seed=3)
    data = read_weak_dataset(voc)
    assert data.classes.names[1:] == ("red_square", "green_disc", "blue_bar")
    cfg = TrainConfig(epochs=25, batch_size=8, val_fraction=0.3, seed=0)  # paper's lr 1e-4
    samples, failed = prepare_samples(tiny_engine, data, cfg)
    assert not failed
    held_out = [s for s in samples if s.split == "val"]
    assert len(held_out) >= 10
    pcfg = PrompterConfig(len(data.classes) - 1, **SMALL)
    report = train(tiny_engine, samples, data.classes.to_list(), tmp_path / "p.pt", cfg, pcfg,
                   device="cpu")
    losses = [h["train_loss"] for h in report.history]
    assert losses[-1] < 0.5 * losses[0], losses

    trained, _ = load_prompter(tmp_path / "p.pt")
    torch.manual_seed(0)
    untrained = Prompter(pcfg)
    acc, base = class_sets(trained, held_out), class_sets(untrained, held_out)
    print(f"losses {losses[0]:.2f} -> {losses[-1]:.2f}; class sets {acc:.2f}, untrained "
          f"{base:.2f}, train {class_sets(trained, [s for s in samples if s.split == 'train'])}")
    # Most held-out class sets right, far above an untrained prompter (and chance, 1/7).
    assert acc > 0.5 and acc > base + 0.3, (acc, base)
    # Every class is learned, the thin blue bar included (it was the one never learned).
    presence = [class_presence(trained, held_out, k) for k in range(3)]
    print(f"held-out presence per class {presence}")
    assert min(presence) >= 0.8, presence
