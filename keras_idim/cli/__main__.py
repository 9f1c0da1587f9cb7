"""`python -m keras_idim.cli`: the `keras-idim` command line."""

import sys

from keras_idim.cli import main

sys.exit(main())
