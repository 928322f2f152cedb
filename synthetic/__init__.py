"""The synthetic affect data set: drawn faces driven by action units, written in the four
real datasets' on-disk formats, with every frame's true labels on the side.

Modules. The face: ``geometry`` (68 points, AU displacement fields, pose), ``identity``
(shape and colours of a person), ``draw`` (OpenCV primitives), ``head`` (the head and its
AU cues), ``render`` (a person into a frame). Around it: ``episodes`` (labels over time),
``scene`` (backgrounds, occluders, head motion), ``camera`` (each source's look, tone,
colour, blur, grain, vignette), ``nuisances`` (per-frame lighting, blur, occluders, sensor
noise), ``annotation`` (label noise, ground-truth rows), ``writers`` (the file formats and
the ground-truth table). The run: ``planning`` (sizes, jobs), ``runners`` (one per
source), ``generate`` (workers, manifest), ``contact_sheet`` (the picture). The size
names are ``synthetic.params.SYNTH_SIZES``; ``planning.SIZES`` defines each.
"""
