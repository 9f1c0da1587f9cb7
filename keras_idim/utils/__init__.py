"""Small shared helpers: argument validation, safe file writing, and the
`keras_idim_export` decorator (`keras_idim.utils.exports`).

Nothing here imports TensorFlow or Keras at import time, so every layer of
keras_idim (and the command line, before TensorFlow loads) can use it; the
decorator imports Keras only to register a Keras-serializable class.
"""
