"""Moved to `nas.search.manas.optimizer_translation`.

Manas's search-time selection (matching, G-means, the architecture filter,
adaptation, optimizer translation) lives beside its strategy, so that
`nas.mining` imports only `nas.ir` and the standard library. This module
only says where it went.
"""

raise ImportError("nas.mining.optimizer_translation moved to nas.search.manas.optimizer_translation "
                  "(the Keras-exact optax optimizers to nas.train.keras_optimizers); import it from there")
