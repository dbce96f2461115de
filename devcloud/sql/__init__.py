"""devcloud's bootstrap SQL (a package so the wheel ships its *.sql files)."""
