"""Editor routes (see the package docstring)."""

ROUTES: list = []
