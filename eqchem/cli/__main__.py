"""``python -m eqchem.cli`` runs the ``eqchem`` command."""
from .main import run

if __name__ == "__main__":  # not when a helper process (multiprocessing spawn) imports it
    run()
