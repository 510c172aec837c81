"""Triton Python-backend entry point; the step it runs is named by this model's kiu.step."""

from kiu.unit.pythonbackend import TritonPythonModel

__all__ = ["TritonPythonModel"]
