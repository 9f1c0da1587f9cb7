"""`python -m keras_idim.bench`: the same as `keras-idim bench`."""

import sys

from keras_idim.bench import main

sys.exit(main())
