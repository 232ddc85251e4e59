"""Instance maps for class maps: components, or one object per class when they do not fit."""

import numpy as np

from napari_samlabel.pseudo.objects import (
    class_units,
    component_count,
    instance_map,
    instances_for,
)


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
