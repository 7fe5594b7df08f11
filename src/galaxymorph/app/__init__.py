"""The Streamlit web app: ``galaxymorph app`` launches :mod:`galaxymorph.app.streamlit_app`.

Importing this package does not import Streamlit; :mod:`galaxymorph.app.core` holds the logic.
"""
