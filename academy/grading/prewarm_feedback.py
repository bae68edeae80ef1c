"""Imported by a parent of grading workers that will write feedback: ``tuning.warm_up()`` with the feedback HTML."""

from academy.grading.tuning import warm_up

warm_up(feedback=True)
