"""modelherd's default Rego policy bundle (the ``*.rego`` files beside this one) and its tests."""
