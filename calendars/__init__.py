"""Calendar connections, calendars, events and attendees synced from Microsoft Graph."""
