"""IMAP, SMTP, OAuth2 and TLS: the only code that speaks to mail servers."""
