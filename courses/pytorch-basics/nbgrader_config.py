"""nbgrader settings for the pytorch-basics course (read by nbgrader and by `academy grade`)."""

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "pytorch-basics"

# Seconds one cell may run before the grader stops the kernel; on a CPU every notebook needs a few seconds,
# and the timing cells of 03-why-gpu stay well under a minute even with a GPU's larger sizes.
c.ExecutePreprocessor.timeout = 120

# What learners see in place of removed solutions (Korean first).
c.ClearSolutions.code_stub = {"python": "# 여기에 코드를 작성하세요 (YOUR CODE HERE)\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "여기에 답을 작성하세요. (YOUR ANSWER HERE)"
