"""Example optbench plugins: the Lion optimizer and an MLP-Mixer image task (see README.md)."""

__version__ = "0.1.0"
