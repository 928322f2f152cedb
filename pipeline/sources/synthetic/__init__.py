"""The synthetic affect data set: drawn faces driven by action units, written in the four
real datasets' on-disk formats, with every frame's true labels on the side.

Modules: the face is ``geometry`` (68 points, AU displacement fields, pose), ``identity``
(shape and colours of a person), ``draw`` (OpenCV primitives), ``head`` (the head and its
AU cues) and ``render`` (a person into a frame); ``episodes`` (labels over time), ``scene``
(backgrounds, looks, camera, occluders, head motion), ``writers`` (the file formats and the
ground-truth table), ``generate`` (sizes, plan, workers), ``contact_sheet`` (the picture).
Nothing heavy is imported here, so ``SIZE_NAMES`` is cheap to reach from the command line.
"""

#: The named sizes, smallest first (defined in ``generate.SIZES``).
SIZE_NAMES = ("tiny", "demo", "medium", "large", "huge")
