from bintally.cli import app

app()
