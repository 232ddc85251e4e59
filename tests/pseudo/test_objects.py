"""Instance maps for class maps: components, or one object per class when they do not fit."""

import numpy as np

from napari_samlabel.pseudo.objects import (
    class_units,
    component_count,
    instance_map,
    instances_for,
    objects_from_labels,
)

SHAPE = (48, 64)
CAT, DOG = 8, 12


def test_components_when_they_fit_else_one_object_per_class():
    sem = np.zeros((20, 20), np.uint8)
    sem[1:4, 1:4] = 8
    sem[10:14, 10:14] = 8
    sem[16:, :5] = 12
    sem[0, 19] = 255
    assert component_count(sem) == 3 and instances_for(sem) is None
    inst = instance_map(sem)
    assert len(set(np.unique(inst[sem == 8]))) == 2 and inst[0, 19] == 255

    dots = np.zeros((48, 48), np.uint8)
    dots[::3, ::3] = 5  # 256 components
    dots[0, 1] = 255
    assert component_count(dots) == 256
    units = instance_map(dots)
    np.testing.assert_array_equal(units, class_units(dots))
    assert set(np.unique(units)) == {0, 1, 255}
    given = np.full(dots.shape, 7, np.uint8)
    assert instances_for(dots, given) is given  # a run's own units win


def test_objects_from_labels_components_classes_and_void():
    labels = np.zeros(SHAPE, np.uint8)
    labels[0:5, 0:5] = CAT
    labels[10:15, 10:15] = CAT
    labels[30:40, 30:40] = DOG
    labels[45:, :] = 255
    objs = objects_from_labels(labels, "sepl:m")
    assert [(o.object_id, o.class_id, o.area) for o in objs] == [(1, CAT, 25), (2, CAT, 25),
                                                                (3, DOG, 100)]
    assert all(o.prompts == () and o.score is None and o.model_id == "sepl:m" for o in objs)
    assert not any(o.mask[45:].any() for o in objs)  # void belongs to no object
    dots = np.zeros(SHAPE, np.uint8)
    dots[::3, ::3] = CAT  # 256 components: one object for the class instead
    assert [o.class_id for o in objects_from_labels(dots)] == [CAT]
