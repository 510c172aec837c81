"""The ProjectVersion API: validated models, ARNs and names, parsed once at the edge.

Modules: ``projectversion`` (constants, models of spec and status, ``parse``),
``arn`` (the compatible API's identifiers), ``names`` (name syntaxes shared with
the CRD), ``errors`` (``ParseError``). Pure: no I/O library is imported here.
"""
