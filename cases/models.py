"""Models of cases; they arrive with the issues that need them."""
