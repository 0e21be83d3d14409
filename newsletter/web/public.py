"""Subscriber-facing routes (see the package docstring)."""

ROUTES: list = []
