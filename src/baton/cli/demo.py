"""`baton demo`: a grant's story told on a throwaway server (see `baton.demo`)."""

from __future__ import annotations

import click

from baton.cli.common import fail


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=int, help="0: a free port.")
@click.option(
    "--exit", "exit_after", is_flag=True, help="Stop once the story is told (for scripts)."
)
def demo(host: str, port: int, exit_after: bool) -> None:
    """Tell a grant's story on a throwaway server: login, rotations, a lost response recovered
    in the leeway, a replay that revokes the family; print its timeline and keep the admin
    console open."""
    from rich.console import Console

    from baton import demo as story

    try:
        story.run(Console(), host=host, port=port, wait=not exit_after)
    except OSError as exc:
        fail(f"cannot serve the demo on {host}:{port}: {exc}")
