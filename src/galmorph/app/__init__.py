"""The Streamlit web app: ``galmorph app`` launches :mod:`galmorph.app.streamlit_app`.

Importing this package does not import Streamlit; :mod:`galmorph.app.core` holds the logic.
"""
