"""Keras's training-time augmentation layers: identity at inference, so the IR holds them as ``Identity``.

``RandomFlip``, ``RandomRotation``... (and the ``GaussianNoise`` /
``GaussianDropout`` regularisers) change their input only while training;
at inference each returns its input unchanged. Public Keras classifiers put
them at the head of the model (``Sequential([RandomFlip(...), Rescaling(...),
Conv2D(...), ...])``), so without them every such model had an unsupported
layer. The architecture is what the IR holds; the augmentation itself is a
data-pipeline concern the IR has no place for, so the mined layer is an
``Identity`` whose ``dropped`` says what was left out.

Not here: layers that change values or shapes at inference too.
``Rescaling`` has an IR op (`nas.mining.keras_transforms`); ``Resizing``,
``CenterCrop``, ``RandomCrop`` (which centre-crops at inference) and
``RandomHeight``/``RandomWidth`` (which change the shape while training)
stay unsupported.
"""

from __future__ import annotations

AUGMENTATION_LAYERS = frozenset({
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomTranslation", "RandomBrightness",
    "RandomSaturation", "RandomHue", "RandomGrayscale", "GaussianNoise", "GaussianDropout",
})

# What `MinedLayer.dropped` says of an augmentation layer held as Identity.
AUGMENTATION_DROPPED = "training-time augmentation (identity at inference; the IR does not augment)"
