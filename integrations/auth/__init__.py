"""Who is calling: hashed, expiring API tokens and throttled logins (issue 17)."""
