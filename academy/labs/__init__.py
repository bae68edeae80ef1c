"""Labs: JupyterHub servers for learners (launch, GPU inventory and queue, quotas, metering)."""
