"""Alembic's scripts for the newsletter's schema: `env.py` and `versions/`. Run through
`newsletter.store.migrate` (no alembic.ini); a package so the wheel ships them."""
