"""Temporal-median composites of co-registered RGB scenes: the core every function imports."""

__version__ = "0.1.0"
