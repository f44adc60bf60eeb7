/* live (issue 13): filled in by its work. */
