"""keras_idim: the intrinsic dimension of objective landscapes, in Keras 3.

Train any built Keras model only in a random d-dimensional subspace of its
D weights, theta = theta_0 + P theta_d (Li et al., ICLR 2018), and find the
smallest d that reaches 90 % of full training.
"""

from keras_idim import callbacks, data, models, projections
from keras_idim.export import export_saved_model, load_compact, save_compact
from keras_idim.search import SearchResult, search
from keras_idim.subspace import SubspaceModel

__version__ = "0.1.0"

__all__ = [
    "SearchResult",
    "SubspaceModel",
    "__version__",
    "callbacks",
    "data",
    "export_saved_model",
    "load_compact",
    "models",
    "projections",
    "save_compact",
    "search",
]
