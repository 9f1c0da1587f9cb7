"""Small shared helpers: argument validation and safe file writing.

Nothing here imports TensorFlow or Keras, so every layer of keras_idim (and
the command line, before TensorFlow loads) can use it.
"""
