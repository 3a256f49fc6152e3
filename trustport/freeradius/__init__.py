"""FreeRADIUS adapter. ``templates/`` holds the FreeRADIUS 3.2 raddb templates that ``trustport radius render``
fills in; they ship as package data so an installed trustport renders without the source checkout."""
