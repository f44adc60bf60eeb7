"""SLA building blocks that need no database: business-time arithmetic and holiday files."""
