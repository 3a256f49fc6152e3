"""The directory adapter (ldap3) and the LDAP schema trustport ships."""
