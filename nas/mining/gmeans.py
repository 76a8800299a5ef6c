"""Moved to `nas.search.manas.gmeans`.

Manas's search-time selection (matching, G-means, the architecture filter,
adaptation, optimizer translation) lives beside its strategy, so that
`nas.mining` imports only `nas.ir` and the standard library. This module
only says where it went.
"""

raise ImportError("nas.mining.gmeans moved to nas.search.manas.gmeans; import it from there")
