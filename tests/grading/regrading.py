"""A graded submission put up for regrading: what the job and mail tests start from."""

from __future__ import annotations

from flask import Flask


def regrade_a_graded_submission(app: Flask, learner: int, instructor: int) -> int:
    """``learner``'s submission of the first assignment, graded 4 of 10, then regraded by ``instructor``.

    The catalogue must be loaded (``make_track``).  ``services.regrade`` queues the job after the
    commit (the ``jobs`` fixture, or a patched ``academy.jobs._send``, sees it); returns the job id.
    """
    from academy.catalog.models import Assignment
    from academy.extensions import db
    from academy.grading.models import AssignmentRelease, Submission, SubmissionStatus
    from academy.grading.services import regrade
    from academy.users.models import User

    with app.app_context():
        assignment = db.session.scalar(db.select(Assignment))
        release = AssignmentRelease(assignment_id=assignment.id, version=1, source_hash="0" * 64, path="/nonexistent")
        submission = Submission(assignment_id=assignment.id, user_id=learner, release=release, attempt=1,
                                status=SubmissionStatus.graded, score=4.0, raw_score=4.0, max_score=10.0)
        db.session.add(submission)
        db.session.commit()
        [job] = regrade(db.session, [submission], actor=db.session.get(User, instructor))
        db.session.commit()
        return job.id
