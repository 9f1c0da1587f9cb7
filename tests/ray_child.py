"""A d-search on Ray workers, run as its own process by tests/test_workers.py.

Usage: python ray_child.py RESULTS_PATH WORKERS

Prints the result as JSON on its last line. The settings are
search_helpers.TINY_RAY: tiny_fc on digits, global baseline, 3 epochs a run.
"""

import json
import sys

from search_helpers import TINY_RAY, digits_arrays, tiny_fc

from keras_idim import search

if __name__ == "__main__":
    path, workers = sys.argv[1], int(sys.argv[2])
    train, val = digits_arrays()
    result = search(
        tiny_fc, train, val, results_path=path, workers=workers, verbose=1, **TINY_RAY
    )
    print(json.dumps(result.to_dict()))
