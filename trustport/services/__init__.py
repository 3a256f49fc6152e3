"""The use cases every adapter calls: authorize an authentication (``authorize``), trust material (anchors,
CRLs), the attestation gate and the MUD lookup. The RADIUS hook, ``trustport decide``, the REST API and the
enforcement planner all go through these, so they cannot disagree."""
