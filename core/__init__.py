"""Backdrop compute package: find, describe and fix background/colour failures of image classifiers.

Never imports streamlit; the app in ``app.py``/``pages/`` and the CLI in ``core.cli`` both call into here.
"""

__version__ = "0.1.0"
