"""The jobs: ``flows/arctic.py`` (the curation flow) and its stage wiring."""
