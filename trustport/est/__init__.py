"""RFC 7030 Enrollment over Secure Transport: the wire encodings (``wire``) and the TLS server (``server``).

The enrolment decisions themselves are ``trustport.services.enrollment``; this package only speaks EST."""
