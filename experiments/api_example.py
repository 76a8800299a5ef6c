"""Search a NumPy dataset from Python, predict on raw inputs, export to StableHLO (README "From Python")."""

import numpy as np
from sklearn.datasets import load_digits

import nas

digits = load_digits()
x = (digits.images * 255 / 16).astype(np.uint8)       # raw 8x8 greyscale images (N, H, W), uint8
y = np.array("zero one two three four five six seven eight nine".split())[digits.target]  # string labels

result = nas.search(x, y, max_trials=3, overrides=["train.epochs=3", "logger=console"])
print(result.best, f"test accuracy {result.summary['test_accuracy']:.3f}")
print("predicted:", result.best.predict(x[:5]), "true:", y[:5])
print("exported to", result.best.export("digits.stablehlo", format="stablehlo"))
