"""PASCAL VOC: the dataset format, written and read.

The modules of this package, one per seam:

- :mod:`.labelpng`: palette label PNGs (encode, write, read) with the VOC colour map;
- :mod:`.components`: boxes, the void band, connected components and specks;
- :mod:`.annotations`: the text files (``Annotations`` XML, ``labelmap.txt``, ``ImageSets``);
- :mod:`.writer`: :class:`~.writer.VocWriter`, which builds a dataset;
- :mod:`.reader`: :func:`~.reader.read_voc`, which reads one.

Layout written by :class:`~.writer.VocWriter` (``OUT`` is the folder *containing* ``VOCdevkit``, the
``root`` torchvision's ``VOCSegmentation`` / ``VOCDetection`` take)::

    OUT/VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg             original bytes when the source is an upright JPEG
                                        (grey ones stay grey: XML depth 1), otherwise
                                        re-encoded (quality 95, RGB) from load_image()
        SegmentationClass/<id>.png      palette PNG: class index, 0 background, 255 void
        SegmentationObject/<id>.png     palette PNG: instance 1..N, 0 background, 255 void
        SegmentationPart/<id>.png       only when parts are given: part class index (same
                                        class table), 0 none, 255 void
        SegmentationPartObject/<id>.png only with parts: part instance 1..M, 0 none, 255 void
        Annotations/<id>.xml            size + one <object> per instance, in instance order,
                                        with a <part> per part it holds (VOC's layout form)
        ImageSets/Segmentation/{train,val,trainval}.txt
        ImageSets/Main/{train,val,trainval}.txt and <class>_{train,val,trainval}.txt
        ImageSets/Segmentation/excluded.txt   ids written but kept out of every split
        labelmap.txt                    CVAT's "name:r,g,b::" class list

Conventions (the development kit's, which torchvision and most trainers follow):

- **Indices, not colours.** Label PNGs are 8-bit palette images whose *indices* are the
  labels; the palette (the standard VOC colour map, :func:`napari_samlabel.core.classes.
  voc_colormap`, which extends deterministically past the 21 VOC classes) is for display.
  At most 255 classes (indices 0..254) fit; 255 is void.
- **Instances** are numbered ``1..N`` in each image; instance ``k`` is the ``k``-th
  ``<object>`` of the XML file (that is how the devkit links the two). Input instance ids
  are renumbered in ascending order to make them so.
- **bndbox** is in 1-based, inclusive pixel coordinates, as in the original annotations:
  ``xmin = first column + 1``, ``ymin = first row + 1``, ``xmax = last column + 1``,
  ``ymax = last row + 1`` (a one-pixel object at row 0, column 0 has ``1 1 1 1``). Loaders
  such as mmdetection subtract 1 to get 0-based coordinates. Boxes are derived from the
  object's full mask, before the void band is drawn.
- **truncated** is 1 when the object's mask touches the image border (the object probably
  continues outside the picture), unless given; **difficult** is 0 and **pose**
  ``Unspecified`` unless given.
- **Void band** (``border=N``): VOC's ground truth marks object borders as 255 in a band
  4 pixels wide across a straight edge (measured on the 12 VOC 2012 sample images: 2,779
  of 2,885 crossings of straight horizontal or vertical edges are 4 px; the "about 5"
  often quoted is the run along a row or column across a slanted edge, where 4 and 5 px
  runs are equally common). With ``border=N`` the band is exactly ``N`` pixels wide
  across every edge between two different labels (class or instance; background counts
  as a label), straddling it: ``ceil(N / 2)`` pixels on the side of the higher label (the
  object, on an object/background edge) and ``floor(N / 2)`` on the other (``N = 1`` is
  the one-pixel outline just inside each object). ``border=4`` reproduces VOC's band best:
  banding the sample's filled-in ground truth again gives a void with IoU 0.87 against
  the original (0.69 with 3, 0.76 with 5). Band pixels become 255 in both PNGs. The image
  border is not an edge. An object thinner than the band keeps all its pixels, so the
  band never erases an object that ``Annotations`` lists.
- **Parts** (object -> part hierarchies, ``dog/head``) never enter ``SegmentationClass`` or
  ``SegmentationObject``, so loaders that know nothing of parts see the objects whole. They
  go into ``SegmentationPart`` / ``SegmentationPartObject``, written for every image of a
  dataset in which at least one image has a part (all zero for the others), and into the
  XML as VOC 2012's person-layout annotations have them: ``<part><name>head</name>
  <bndbox>...</bndbox></part>`` inside the parent's ``<object>``, after its ``bndbox``, the
  name without the parent's prefix. A part without a parent object is in the part maps
  only. The void band is drawn on the part maps along the edges between parts.
"""

import re

#: The folder torchvision's ``root`` contains.
DEVKIT = "VOCdevkit"
#: The splits of ``ImageSets`` (``trainval`` is their union).
SPLITS = ("train", "val")
#: The list of images written but kept out of every split.
EXCLUDED = "excluded"


class VocError(ValueError):
    """Bad input for, or bad content in, a VOC dataset; the message names the file or image."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def voc_id(image_id: str) -> str:
    """The id an image gets in a VOC dataset: the one renaming rule of every VOC export.

    VOC file names hold ASCII letters, digits and ``_.+-`` only: every other character (a
    space, an accented letter, a path separator) becomes ``_``, and a leading ``.`` becomes
    ``_`` (no hidden files). ``samlabel export`` and the VOC export of ``samlabel
    pseudo-label`` both use it; two images whose ids become the same are an error.
    """
    safe = _UNSAFE.sub("_", image_id)
    return safe if not safe.startswith(".") else "_" + safe[1:]
