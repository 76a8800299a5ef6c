"""TAPAS (NeuNetS, paper section 4.1.2): judge a network on a dataset without training it.

Three parts, each its own module:

* `nas.tapas.dcn`: the dataset characterisation number (DCN), the peak
  validation accuracy of a fixed, small probe network (the paper's "deep
  normalised ProbeNet", scaled to a CPU) after a few epochs; computed once per
  dataset fingerprint and cached in the lifelong database of experiments
  (`nas.lde`).
* `nas.tapas.metaqnn`: a MetaQNN-like space of small networks (convolutions,
  pooling, residual blocks, skips, dropout; an MLP family) and its prefix
  sub-networks, which `experiments/lde_init.py` trains to fill the LDE.
* `nas.tapas.encoding`, `nas.tapas.examples`, `nas.tapas.predictor`: the
  train-less accuracy predictor (TAP): per-layer encodings, LDE rows as
  training examples, and the LSTM predictor itself.
* `nas.tapas.proxies`: the training-free baselines TAP is compared with.

Layering: `nas.tapas` sits beside `nas.search` and may import `nas.lde`,
`nas.train`, `nas.compile`, `nas.ir` and `nas.data`, never `nas.search` or
`nas.api` (the search imports TAPAS for its prefilter).
"""
