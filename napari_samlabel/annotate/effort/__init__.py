"""The simulated annotator: how much human work an image costs with a model and a setting.

A labelled dataset (a VOC tree or a project) is annotated by a simulated annotator through
the same session code the GUI uses, and the clicks, proposal decisions and class choices it
needed become NoC@85 / NoC@90, an mIoU-against-clicks curve and seconds per image (a cost
model). Modules:

- :mod:`.clicker`: where the next prompt goes (the documented rules);
- :mod:`.dataset`: reading the ground truth;
- :mod:`.simulate`: one image through a headless
  :class:`~napari_samlabel.annotate.session.AnnotationSession`;
- :mod:`.run`: a whole dataset, locally or on a dask cluster, resumable;
- :mod:`.report`: result files, tables, the cost model; :mod:`.plot`: the PNG.
"""

from napari_samlabel.annotate.effort.dataset import (
    Dataset,
    DatasetError,
    GroundTruth,
    GroundTruthObject,
    load_ground_truth,
    open_dataset,
)
from napari_samlabel.annotate.effort.report import DEFAULT_COSTS, CostError, load_costs
from napari_samlabel.annotate.effort.run import RunReport, simulate_annotation
from napari_samlabel.annotate.effort.simulate import (
    ConceptProposals,
    ImageEffort,
    ObjectEffort,
    Settings,
    SimulationError,
    simulate_image,
)

__all__ = ["DEFAULT_COSTS", "ConceptProposals", "CostError", "Dataset", "DatasetError",
           "GroundTruth", "GroundTruthObject", "ImageEffort", "ObjectEffort", "RunReport",
           "Settings", "SimulationError", "load_costs", "load_ground_truth", "open_dataset",
           "simulate_annotation", "simulate_image"]
