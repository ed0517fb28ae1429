"""The ``yieldmeter`` command line: parse, call the Workspace, format.

Each capability keeps its commands in its own module under ``yieldmeter.cli``
and exposes ``register(app)``; :data:`COMMAND_MODULES` lists them. Commands
hold no SQL and no business logic.
"""

from __future__ import annotations

import importlib

import typer

#: Modules that add commands; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES: list[str] = [
    "yieldmeter.cli.core",
    "yieldmeter.cli.reported_cost",
    "yieldmeter.cli.value",
    "yieldmeter.cli.serve",
    "yieldmeter.cli.capacity",
    "yieldmeter.cli.simulate",
    "yieldmeter.cli.routing",
    "yieldmeter.cli.reports",
    "yieldmeter.cli.keys",
    "yieldmeter.cli.finops",
    "yieldmeter.cli.lake",
]


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="yieldmeter",
        help="AI value management: from token spend to cost per successful outcome and yield.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
