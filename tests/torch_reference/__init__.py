"""PyTorch reference models for parity tests (used only by tests that `pytest.importorskip("torch")`)."""
