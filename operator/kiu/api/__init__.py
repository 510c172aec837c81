"""Validated models of the ProjectVersion spec and status, parsed once at the edge."""
