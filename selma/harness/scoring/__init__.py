"""Question-answer scoring shared by DSG, TIFA and every QA-style suite."""
