import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def fashion_train():
    from overthink_lib.data import get_dataset

    return get_dataset("fashion_mnist", "train")


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count (a job runner, say) must not change the numbers of the tests after it:
    CPU results depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


_NOTES: list[str] = []


@pytest.fixture
def record_note():
    """``record_note(line)``: a line the run prints at its end, whatever pytest captured (what was not compared)."""
    return _NOTES.append


def pytest_terminal_summary(terminalreporter):
    for line in _NOTES:
        terminalreporter.write_line(line)
