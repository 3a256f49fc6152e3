"""The command line (click): ``main`` builds the ``trustport`` group from the command modules here."""


def main() -> None:
    """``trustport.cli:main`` (the console script of older installs) -> ``trustport.cli.main:main``."""
    from trustport.cli.main import main as run

    run()
