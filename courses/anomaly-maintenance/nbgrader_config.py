"""nbgrader settings for the anomaly-maintenance course (read by nbgrader and by `academy grade`)."""

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "anomaly-maintenance"

# Seconds one cell may run before the grader stops the kernel; the notebooks need well under 10.
c.ExecutePreprocessor.timeout = 60

# What learners see in place of removed solutions (Korean first).
c.ClearSolutions.code_stub = {"python": "# 여기에 코드를 작성하세요 (YOUR CODE HERE)\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "여기에 답을 작성하세요. (YOUR ANSWER HERE)"
