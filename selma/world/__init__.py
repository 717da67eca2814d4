"""A procedurally rendered world of coloured shapes where every DSG-style question is answered exactly."""
