"""The portal as a WSGI application: ``gunicorn wsgi:app``."""

from academy import create_app
from academy.web.warmup import warm_templates

app = create_app()
# Each worker compiles the page templates as it starts, so that no visitor waits for it (academy/web/warmup.py).
warm_templates(app)
