"""The application layer, Qt-free: what the annotator does, headless; the GUI is a view of it.

- :mod:`.session`: :class:`~.session.AnnotationSession` (images, navigation, objects,
  autosave) over :mod:`.decoding` (its state and engine work: encode, prefetch, decode);
- :mod:`.lane`: the engine lane and its runners;
- :mod:`.review` and :mod:`.refine`: the Review and Refine tabs' controllers;
- :mod:`.display` and :mod:`.model`: what the panels show (text and rows) and the model
  picker's options, list and state.
"""
