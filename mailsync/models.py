"""Models of mailsync; they arrive with the issues that need them."""
