"""Test helpers for labs: the pytest plugin (fixtures `vethlab_sandbox`, `vethlab_lab`)."""
