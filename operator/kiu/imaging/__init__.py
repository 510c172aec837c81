"""Image handling shared by every runtime that serves kiu's models.

Triton's Python-backend steps and kiu's own cpu runtime both import these
modules, so decoding, resizing and turning model outputs into labels cannot
differ between the two. Pure numpy and Pillow: bytes in, arrays or bytes out.

- `preprocessing`: encoded PNG/JPEG bytes -> model input tensors.
- `postprocessing`: model output tensors -> labels, confidences, thresholds, boxes.
- `scenes`: deterministic synthetic images (coloured shapes) with ground truth,
  used to train the bundled models, to test them and to load-test a unit.
"""
