"""Mining: Keras models found by static analysis of Python source, as IR (Manas section 4.1).

Owns the static miner (`mine_source`: an abstract interpreter over `ast` that
never imports or runs the mined code), the Keras layer and optimizer tables
that normalise Keras 1/2 spellings into IR attributes, the mined-model
records, intent derivation, the funnel over a corpus, the SQLite/JSONL model
zoo and the ``nas-mine`` command. It imports `nas.ir` and the standard library
only (mining -> ir), so mining and the CLI start without JAX. What Manas does
with a zoo at search time (matching, adaptation, optimizer translation) lives
beside its strategy, in `nas.search.manas`.

The miner is three layers: a generic abstract interpreter of Python
(`interpreter` with its `interp_*` parts: scopes, expressions, statements,
calls, and the step/loop/recursion/size budgets that keep a hostile file from
hanging it), Keras semantics on its hooks (`keras_semantics`,
`keras_graphs`, `keras_objects`), and the file-level driver (`source`:
`mine_source`). How unresolved values and unsupported layers appear is stated
in `nas.mining.assemble` (the rule for ``MinedModel.arch``) and in
`nas.mining.source` (what the interpreter follows). Constants a file imports
from its own repository's modules are read by `nas.mining.sibling_modules`;
Keras's augmentation layers, identity at inference, are listed in
`nas.mining.keras_augmentation`; its parameter-free transforms with IR ops
(Rescaling, the ReLU family, Reshape, UpSampling2D) in
`nas.mining.keras_transforms`.
"""

from nas.mining.corpus import SourceFile, python_files
from nas.mining.errors import MiningError, UnstorableModelError, ZooFormatError
from nas.mining.funnel import CorpusReport, Funnel, mine_corpus, mine_file
from nas.mining.intent import Intent, model_intent
from nas.mining.keras_layers import LayerCall, translate_layer
from nas.mining.model import (
    BINARY, INTERNAL_ERROR, NO_MODEL, NOT_KERAS, NOT_TEXT, OK, PYTHON2, STATUSES, SYNTAX_ERROR, TOO_LARGE, MinedLayer,
    MinedModel, MineResult, Provenance,
)
from nas.mining.optimizers import translate_optimizer
from nas.mining.source import mine_source
from nas.mining.values import KerasObject, Unresolved
from nas.mining.zoo import (
    ZooEntry, export_jsonl, load_seed_zoo, load_zoo, read_jsonl, read_zoo, seed_zoo_meta, write_zoo, zoo_entry,
)

__all__ = [
    "BINARY", "CorpusReport", "Funnel", "INTERNAL_ERROR", "Intent", "KerasObject", "LayerCall", "MineResult",
    "MinedLayer", "MinedModel", "MiningError", "NOT_KERAS", "NOT_TEXT", "NO_MODEL", "OK", "PYTHON2", "Provenance",
    "STATUSES", "SYNTAX_ERROR", "SourceFile", "TOO_LARGE", "Unresolved", "UnstorableModelError", "ZooEntry",
    "ZooFormatError", "export_jsonl", "load_seed_zoo", "load_zoo", "mine_corpus", "mine_file", "mine_source",
    "model_intent", "python_files", "read_jsonl", "read_zoo", "seed_zoo_meta", "translate_layer",
    "translate_optimizer", "write_zoo", "zoo_entry",
]
