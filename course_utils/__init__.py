"""Helpers for the "Neurons to Pipelines" course. Import this first in every notebook.

Importing it prepares the frameworks (quiet TensorFlow logs, triton loaded before TensorFlow,
see ``course_utils.env``); the modules themselves are imported where they are used.
"""
from course_utils.env import quiet_frameworks

quiet_frameworks()

__all__ = ["quiet_frameworks"]
