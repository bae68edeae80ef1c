"""Imported by a parent of grading workers (a fork server's preload) to run ``tuning.warm_up()`` once.

``academy.engine.prewarm_feedback`` adds the feedback templates.  What the warm-up built is then
frozen out of the workers' garbage collections (``tuning.freeze_for_fork``).
"""

from academy.engine.tuning import freeze_for_fork, warm_up

warm_up()
freeze_for_fork()
