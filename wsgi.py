"""The portal as a WSGI application: ``gunicorn wsgi:app``."""

from academy import create_app
from academy.web.warmup import warm_statements, warm_templates

app = create_app()
# Each worker compiles the page templates and the SQL of the heaviest pages as it starts, so that no visitor
# waits for it (academy/web/warmup.py).
warm_templates(app)
warm_statements(app)
