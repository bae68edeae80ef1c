"""The portal as a WSGI application: ``gunicorn wsgi:app``."""

from academy import create_app

app = create_app()
