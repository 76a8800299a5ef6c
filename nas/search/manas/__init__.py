"""Manas (ICSE'22): the search strategy and the search-time selection it starts from.

Owns what Manas does once a zoo of mined models exists:

- `strategy`: the `MANAS` strategy (match, dropout and morph phases as asks
  and tells) and its space, `ManasSpace`;
- `matching`, with `gmeans` and `graph_similarity`: which mined models match
  the data (s4.2-4.3);
- `adapt`: fitting a matched model to the data and Manas's repairs (s4.4-4.5);
- `optimizer_translation`: a mined Keras optimizer as the trainer's config
  (s4.1), or as Keras's exact optax rule.

May import `nas.ir`, `nas.morph`, `nas.train`, `nas.mining` (the zoo, intents,
the optimizer argument names) and the rest of `nas.search`; the miner itself
(`nas.mining`) never imports this package. Configs name the strategy as
``nas.search.manas.MANAS``; it names its space, `ManasSpace`.
"""

from nas.search.manas.strategy import (
    DONE, DROPOUT, DROPOUT_WHEN, MANAS, MATCH, MORPH, ManasSpace, ManasState, Setup, Start, ZooNotFoundError, load_zoo,
    mined_setup, shipped_zoo, starting_points,
)

__all__ = [
    "DONE", "DROPOUT", "DROPOUT_WHEN", "MANAS", "MATCH", "MORPH", "ManasSpace", "ManasState", "Setup", "Start",
    "ZooNotFoundError", "load_zoo", "mined_setup", "shipped_zoo", "starting_points",
]
