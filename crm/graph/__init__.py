"""Microsoft Graph: the token provider now, the client (retries, limiter, breaker) next."""
