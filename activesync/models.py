"""Models of activesync; they arrive with the issues that need them."""
