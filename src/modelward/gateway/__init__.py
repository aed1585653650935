"""The protective gateway: the front door that authenticates, validates and audits model traffic."""
