"""The portal as a WSGI application: ``gunicorn wsgi:app``."""

from academy import create_app
from academy.web.warmup import own_pool_after_fork, warm_statements, warm_templates

app = create_app()
# Each worker compiles the page templates and the SQL of the heaviest pages as it starts, so that no visitor
# waits for it (academy/web/warmup.py).
warm_templates(app)
warm_statements(app)
# With ``gunicorn --preload`` the workers are forked from here: each gets a database pool of its own.
own_pool_after_fork(app)
