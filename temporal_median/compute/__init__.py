"""The median itself: kernels, their ahead-of-time library, and one tile read, reduced, written."""
