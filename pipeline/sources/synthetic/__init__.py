"""The synthetic affect data set: drawn faces driven by action units, written in the four
real datasets' on-disk formats, with every frame's true labels on the side.

Modules: ``face`` (the renderer), ``episodes`` (labels over time), ``scene`` (backgrounds,
looks, camera, occluders, head motion), ``writers`` (the file formats and the ground-truth
table), ``generate`` (sizes, plan, workers), ``contact_sheet`` (the picture).
Nothing heavy is imported here, so ``SIZE_NAMES`` is cheap to reach from the command line.
"""

#: The named sizes, smallest first (defined in ``generate.SIZES``).
SIZE_NAMES = ("tiny", "demo", "medium", "large", "huge")
