"""Imported by a parent of grading workers that will write feedback: ``prewarm``, then ``tuning.warm_up_feedback()``."""

import academy.engine.prewarm  # noqa: F401 - the warm-up every worker needs, once per process
from academy.engine.tuning import freeze_for_fork, warm_up_feedback

warm_up_feedback()
freeze_for_fork()
