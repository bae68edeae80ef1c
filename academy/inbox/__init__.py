"""Learners' inbox: what the portal tells them (scores, nudges, announcements, deadlines, lab quota), also by mail."""
