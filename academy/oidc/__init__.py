"""The portal as an OpenID Connect provider: JupyterHub signs learners in against it."""
