"""``tepui batch``: run the batch framework (arrays, DAGs of stages, retries, gangs; docs/batch.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tepui.cli.framework_process import common, process_options, start

if TYPE_CHECKING:
    from tepui.frameworks.batch.queue_values import QueuesConfig


def _queues(path: str | None) -> QueuesConfig | None:
    """The queues file (YAML: ``queues: [{name, priority, max_running}]``, ``weights: {user: w}``)."""
    if path is None:
        return None
    import yaml

    from tepui.frameworks.batch.queue_values import QueueConfigError, QueuesConfig

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        return QueuesConfig.from_dict(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--queues") from None
    except (yaml.YAMLError, QueueConfigError) as exc:
        raise click.BadParameter(f"{path}: {exc} (see docs/batch.md, 'Queues and fairness')",
                                 param_hint="--queues") from None


@click.command("batch")
@process_options("batch", 5091, "SQLite file holding jobs, attempts and history (default: "
                 "$XDG_STATE_HOME/tepui/batch.sqlite). Keep it: a restart resumes every job from it.")
@click.option("--queues", "queues_file", default=None, metavar="FILE",
              help="YAML queues and fair-share weights (default: one queue, 'default', equal weights).")
@click.option("--master-http", default=None, metavar="URL",
              help="The master's HTTP URL downstream tasks fetch upstream outputs from (default: from the "
              "master's subscription answer).")
def batch_command(queues_file: str | None, master_http: str | None, log_level: str, **flags: Any) -> None:
    """Run the batch framework: jobs of task arrays and stages, queued fairly (`tepui jobs ...`)."""
    queues = _queues(queues_file)

    def run(reactor: Any) -> int:  # imported once the reactor is installed
        from tepui.frameworks.batch.main import BatchOptions, run

        return run(BatchOptions(**common(flags), queues=queues, master_http=master_http), reactor)

    start("batch", log_level, run)
