"""Handlers: one module per feature, each with its own ``router``; :mod:`modelherd.wiring` combines them.

A handler receives the stored event and its dependencies (``forge``, ``registries``, ``clusters``,
``clock``, ``store``...) and builds none of them, so tests pass fakes and GitLab reuses the handler.
"""
