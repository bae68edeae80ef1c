"""Course staff's workspace: their home, the course gradebook and rosters, question statistics."""
