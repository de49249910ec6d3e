"""The ``proseg-pyro`` command line (installed as ``proseg_pyro.cli``)."""
