"""Imported by a parent of grading workers (a fork server's preload) to run ``tuning.warm_up()`` once.

``academy.grading.prewarm_feedback`` adds the feedback templates.
"""

from academy.grading.tuning import warm_up

warm_up()
