"""One recipe of defaults for `keras_idim.search` and `keras-idim search`,
so that the same model and data give the same d_int both ways. No
TensorFlow here: the command line reads it before importing it."""

#: The training recipe of a search, unless given.
RECIPE = {
    "projection": "fastfood",
    "fraction": 0.9,
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": "auto",
    "baseline_learning_rate": "auto",
}
