import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test on one CPU thread.

    The test networks are too small to gain from threads, and on a machine shared with other
    processes OpenMP threads oversubscribe the cores: a UNet step then takes 20-40x longer.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
