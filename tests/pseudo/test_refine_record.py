"""The refiners' records: parameters with defaults from the module constants, bounds, help."""

from dataclasses import dataclass, replace

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import (
    METHODS,
    REFINERS,
    SAMS_PARAMS,
    AutoMask,
    AutoMaskOptions,
    AutoMaskParams,
    Refiner,
    RefinerParams,
    SamsParams,
    SeplParams,
    SlicParams,
    all_parameters,
    api,
    automask,
    get_refiner,
    param,
    parameters,
    refine_labels,
    sams,
    sepl,
    sepl_refine,
    slic,
)
from napari_samlabel.pseudo.refine.automask import LEVEL_WHOLE

#: Every parameter's default, written against the module constants it must come from.
CONSTANTS = {
    "segment_ratio": sepl.SEGMENT_RATIO, "class_ratio": sepl.CLASS_RATIO,
    "occupation_ratio": sams.OCCUPATION_RATIO, "occupation": sams.OCCUPATION,
    "alpha": sams.ALPHA,
    "whole_iou_offset": SAMS_PARAMS.level_iou_offset[LEVEL_WHOLE],
    "whole_nms_offset": SAMS_PARAMS.level_nms_offset[LEVEL_WHOLE],
    "n_segments": slic.N_SEGMENTS, "compactness": slic.COMPACTNESS, "sigma": slic.SIGMA,
    "rule": slic.RULE, "ignore_ratio": slic.IGNORE_RATIO,
    "points_per_side": AutoMaskParams().points_per_side,
    "points_per_batch": 0,  # AutoMaskParams' None: by device
    "pred_iou_thresh": AutoMaskParams().pred_iou_thresh,
    "stability_score_thresh": AutoMaskParams().stability_score_thresh,
    "box_nms_thresh": AutoMaskParams().box_nms_thresh,
}


def test_registry_and_records():
    assert METHODS == ("sepl", "sams", "slic") and tuple(REFINERS) == METHODS
    assert get_refiner("sams") is sams.REFINER
    with pytest.raises(ValueError, match="unknown refine method 'crf'; choose one of sepl"):
        get_refiner("crf")
    assert REFINERS["sepl"].needs == ("coarse", "masks") and REFINERS["sepl"].uses_masks
    assert REFINERS["sams"].needs == ("maps", "masks")
    assert REFINERS["slic"].needs == ("coarse",) and not REFINERS["slic"].uses_masks
    assert set(REFINERS["slic"].accepts) == {"maps", "confidence"}
    assert {r.params for r in REFINERS.values()} == {SeplParams, SamsParams, SlicParams}


def test_defaults_are_the_module_constants():
    params = all_parameters()
    assert {n: p.default for n, p in params.items()} == CONSTANTS
    for refiner in REFINERS.values():
        values = refiner.params().values()
        assert values == {n: CONSTANTS[n] for n in values}
    assert SeplParams().automask_params() == AutoMaskParams()
    assert SamsParams().automask_params() == SAMS_PARAMS
    assert SlicParams().automask_params() == AutoMaskParams()


def test_every_parameter_has_help_and_bounds_around_its_default():
    for info in all_parameters().values():
        assert info.doc and info.label and info.flag == "--" + info.name.replace("_", "-")
        assert info.check(info.default) is None
        if info.choices is None:
            assert info.low is not None and info.high is not None and info.step
            assert info.kind in (int, float)
        else:
            assert info.kind is str and info.default in info.choices
    # the masks group is the same for the refiners that use SAM's automatic masks
    masks = {i.name for i in parameters(AutoMaskOptions)}
    for refiner in REFINERS.values():
        names = {i.name for i in refiner.parameters() if i.group == "masks"}
        assert names == (masks if refiner.uses_masks else set())


def test_values_are_checked_against_the_bounds():
    with pytest.raises(ValueError, match=r"segment_ratio must be in \[0, 1\], got 1.5"):
        SeplParams(segment_ratio=1.5)
    with pytest.raises(ValueError, match="rule must be one of majority, all, got 'some'"):
        SlicParams(rule="some")
    with pytest.raises(ValueError, match="n_segments must be a whole number"):
        SlicParams(n_segments=2.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        SamsParams(alpha=0)
    with pytest.raises(TypeError, match="alpha"):
        SeplParams(alpha=0.5)
    p = SamsParams(points_per_side=4, points_per_batch=8, whole_iou_offset=0.2)
    amp = p.automask_params()
    assert (amp.points_per_side, amp.points_per_batch) == (4, 8)
    assert amp.level_iou_offset == (0.0, 0.0, 0.2)
    assert amp.level_nms_offset == SAMS_PARAMS.level_nms_offset


def test_a_parameter_must_be_declared_with_param():
    @dataclass(frozen=True)
    class Bare(RefinerParams):
        knob: float = 0.5

    with pytest.raises(TypeError, match="declare refiner parameters with param"):
        Refiner("bare", "t", needs=("coarse",), accepts=(), params=Bare,
                run=lambda x, p: x.coarse)
    with pytest.raises(ValueError, match="unknown inputs"):
        Refiner("x", "t", needs=("crf",), accepts=(), params=SlicParams,
                run=lambda x, p: x.coarse)


def test_refine_labels_takes_the_record_settings(rect_image, monkeypatch):
    coarse = np.zeros(rect_image.shape[:2], dtype=np.uint8)
    coarse[22:58, 32:88] = 9
    whole = np.zeros(coarse.shape, dtype=bool)
    whole[20:60, 30:90] = True
    masks = [AutoMask(whole, int(whole.sum()), 0.9, 0.95, (30, 20, 59, 39), 2, (60, 40))]
    got = refine_labels("sepl", rect_image, coarse=coarse, masks=masks,
                        settings=SeplParams(class_ratio=0.9))
    np.testing.assert_array_equal(got, sepl_refine(coarse, masks, class_ratio=0.9))
    with pytest.raises(TypeError, match="SeplParams"):
        refine_labels("sepl", rect_image, coarse=coarse, masks=masks, settings=SlicParams())
    with pytest.raises(TypeError, match="confidence"):
        refine_labels("sepl", rect_image, coarse=coarse, masks=masks,
                      confidence=np.ones(coarse.shape))
    # the automatic masks are asked for with the settings' parameters
    seen = []
    monkeypatch.setattr(api, "automatic_masks", lambda sam, image, params, **kw:
                        seen.append(params) or masks)
    refine_labels("sams", rect_image, maps=np.ones((1, *coarse.shape)), class_ids=[9],
                  sam=object(), settings=SamsParams(points_per_side=2))
    assert seen == [replace(SAMS_PARAMS, points_per_side=2)]
    assert automask.is_mask_engine(object()) is False


def test_shared_names_must_mean_the_same_parameter(monkeypatch):
    @dataclass(frozen=True)
    class Other(RefinerParams):
        alpha: float = param(0.5, "another alpha", low=0.0, high=1.0, step=0.1)

    monkeypatch.setitem(api.REFINERS, "other", replace(slic.REFINER, name="other",
                                                       params=Other))
    with pytest.raises(ValueError, match="parameter alpha differs"):
        all_parameters()
