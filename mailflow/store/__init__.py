"""The only package that talks to the database (SQLAlchemy) and the file archive."""
