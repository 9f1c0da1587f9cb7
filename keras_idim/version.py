"""The version of keras_idim: the only place it is written."""

__version__ = "0.2.0"
