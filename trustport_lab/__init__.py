"""The lab and its simulators: ``trustport lab`` (real FreeRADIUS + eapol_test against a throw-away PKI), the
fake switches and NAS in ``fakes/``, the fake attestation verifier and the test-PKI generator. Installed with the
``lab`` extra; the tests import their simulators from here, never the other way round."""
