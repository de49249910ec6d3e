"""``proseg-pyro synth``: write the built-in synthetic set as NIfTI files and a manifest."""
from __future__ import annotations

import click

from .main import cli
