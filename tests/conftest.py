"""Test settings: 8 simulated CPU devices (set before JAX starts) and paths to the shared data."""

import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache for the whole run: the first process to load this file (pytest itself, or
# xdist's controller) makes a fresh folder, and every worker and every process a test starts (the CLI, the
# two-process training) inherits the variables, so a program one test compiled is loaded, not compiled again,
# by the next that builds it. Fresh per run, so no run is faster for an earlier one; removed at the end.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxvos-tests-xla-")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """`../shared/data` beside the checkout; tests that need it fail loudly if it is missing."""
  assert SHARED_DATA.is_dir(), f"{SHARED_DATA} not found: the shared DAVIS data must sit beside the checkout"
  return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
  """PyTorch on one thread for a module's tests: its thread pool crawls when the test machine's 2 cores are shared
  with JAX and other processes. Torch modules use it with `pytestmark = pytest.mark.usefixtures(...)`."""
  import torch  # pylint: disable=g-import-not-at-top
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
