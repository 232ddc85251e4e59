"""What trains: the WPS-SAM prompter, segmentation networks and self-training, CLIP prompts.

Nothing here imports torch at package import, so the names below are cheap to import.
"""

#: The prompter's file in the folder ``samlabel train-prompter --out DIR`` writes (its
#: resume state is this name + ``".resume"``).
PROMPTER_FILE = "prompter.pt"
#: A trained segmenter's model folder (``samlabel train --out DIR``): weights, then metadata.
MODEL_FILE = "model.pt"
META_FILE = "model.json"
