"""The Exchange ActiveSync protocol front end. Owns no business data."""
