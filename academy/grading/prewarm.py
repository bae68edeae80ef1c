"""Imported by a parent of grading workers (a fork server's preload) to run ``tuning.warm_up()`` once."""

from academy.grading.tuning import warm_up

warm_up()
