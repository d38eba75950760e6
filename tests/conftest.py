import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def fashion_train():
    from overthink_lib.data import get_dataset

    return get_dataset("fashion_mnist", "train")
