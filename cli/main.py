"""Root of the `dvd360` command: each role registers its own sub-commands; heavy imports stay inside commands."""

import typer

from cli import generate, media, models, serve, submit, train

# Plain click help: rich's option tables cut names and help at 80 columns ("--negative-prom…"); click's
# formatter wraps at any terminal width instead and never truncates.
app = typer.Typer(
    help="360° panorama video generation (360DVD).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"max_content_width": 160},
)
generate.register(app)
media.register(app)
models.register(app)
serve.register(app)
submit.register(app)
train.register(app)
