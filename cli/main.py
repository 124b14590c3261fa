"""Root of the `dvd360` command: each role registers its own sub-commands; heavy imports stay inside commands."""

import typer

from cli import generate, media, models, serve, submit, train

app = typer.Typer(help="360° panorama video generation (360DVD).", no_args_is_help=True)
generate.register(app)
media.register(app)
models.register(app)
serve.register(app)
submit.register(app)
train.register(app)
