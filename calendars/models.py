"""Models of calendars; they arrive with the issues that need them."""
