"""Moved to `nas.search.manas.adapt`.

Manas's search-time selection (matching, G-means, the architecture filter,
adaptation, optimizer translation) lives beside its strategy, so that
`nas.mining` imports only `nas.ir` and the standard library. This module
only says where it went.
"""

raise ImportError("nas.mining.adapt moved to nas.search.manas.adapt; import it from there")
