"""``python -m eqchem.cli`` runs the ``eqchem`` command."""
from .main import app

app()
