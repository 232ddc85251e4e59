"""What trains: the WPS-SAM prompter, segmentation networks and self-training, CLIP prompts."""
