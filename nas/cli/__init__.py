"""Hydra entry points (nas-train, nas-eval, nas-search).

The only place configs are read: each turns its DictConfig into typed specs
(`nas.api.settings`) and calls the library.
"""
