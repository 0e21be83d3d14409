"""One file per schema revision, oldest first: 0001_baseline.py, 0002_…"""
