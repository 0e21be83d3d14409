"""The database: schema in `schema.py`, the engine in `engine.py`, and every query
as a named function in the module for the data it touches. No SQL lives elsewhere."""
