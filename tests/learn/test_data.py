import numpy as np
import pytest
from PIL import Image

from napari_samlabel.io.project import Project
from napari_samlabel.io.voc.labelpng import write_label_png
from napari_samlabel.learn.data import DataError, SegmentationDataset, load_samples
from napari_samlabel.learn.synthetic import write_shapes_voc
from tests.io.projects import H, W, accept, rect


def test_project_gives_its_annotated_images(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(imgs / f"{name}.png")
    project = Project.create(tmp_path / "p", imgs, ["background", "cat", "dog"])
    doc = project.load_document("a")
    accept(doc, rect(0, 10, 0, 10), 2)
    project.save_document(doc)
    samples, classes = load_samples(tmp_path / "p")
    assert [s.image_id for s in samples] == ["a"]  # b has no objects
    assert classes.names == ("background", "cat", "dog")
    assert samples[0].labels[5, 5] == 2 and samples[0].labels[20, 20] == 0


def test_voc_errors_name_the_problem(tmp_path):
    voc = write_shapes_voc(tmp_path / "d", 2, size=16, num_classes=3)
    write_label_png(voc / "SegmentationClass" / "s0000.png", np.full((16, 16), 7, np.uint8))
    with pytest.raises(DataError, match=r"s0000: label values \[7\] outside the 3 classes"):
        load_samples(voc)
    with pytest.raises(DataError, match="not a VOC dataset"):
        load_samples(tmp_path)


def test_dataset_items_resize_labels_nearest_and_weight_void_zero(tmp_path):
    voc = write_shapes_voc(tmp_path / "d", 1, size=32, num_classes=3)
    samples, _ = load_samples(voc)
    samples[0].labels[:4] = 255
    x, y, w = SegmentationDataset(samples, 16, "distance", train=False)[0]
    assert x.shape == (3, 16, 16) and y.shape == (16, 16) and w.shape == (16, 16)
    assert set(np.unique(y.numpy())) <= {0, 1, 2, 255}
    assert np.all(w.numpy()[y.numpy() == 255] == 0)
