"""Tools that run on the operator's PC or in tests (ordinary CPython)."""
