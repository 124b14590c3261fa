"""Pixels <-> files: flow conditions, ERP geometry, evaluation, MP4 writing with spherical metadata (numpy only)."""
