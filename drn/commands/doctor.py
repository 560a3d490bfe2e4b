"""``drn doctor``: the read-only pre-flight checklist (Slurm, environment, data); ``--last``."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_params_option, read_params
from drn.commands.output import say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "doctor", help="check this setup before the pipeline runs: Slurm, environment, data",
        description="A read-only checklist, in seconds, for params.yaml and the Snakemake profile "
        "in use: Slurm (partition, account, each job's GPUs/CPUs/memory/time limit against the "
        "nodes, the status command), the Python environment and torch, the tracking store, the "
        "data and free disk space, and the plan's size; a fix for every miss. Exit 0 when "
        "nothing fails (warnings pass), 1 otherwise.",
    )  # fmt: skip
    add_params_option(parser)
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="the Snakemake profile (default: ~/.config/snakemake/slurm after make "
        "slurm-profile, else workflow/profiles/slurm)",
    )  # fmt: skip
    parser.add_argument(
        "--default-resources", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="as snakemake's, on top of the profile's: slurm_partition=NAME slurm_account=NAME",
    )  # fmt: skip
    parser.add_argument(
        "--slurm-status-command", choices=("sacct", "squeue"),
        help="as snakemake's, instead of the profile's",
    )  # fmt: skip
    parser.add_argument(
        "--probe", action="store_true",
        help="also submit a 1-minute job with the training job's GPU request that imports torch "
        "with this Python and counts the GPUs it sees (waits up to 3 minutes)",
    )  # fmt: skip
    parser.add_argument(
        "--online", action="store_true", help="also ask each source's url (a HEAD request)"
    )
    parser.add_argument("--json", action="store_true", help="the results as JSON, for scripts")
    parser.add_argument(
        "--last", action="store_true",
        help="instead: the jobs whose last attempt failed, with their logs "
        "({paths.results}/logs/**/*.attempts.jsonl)",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    from drn.doctor import checklist as doctor

    params = read_params(args.params)
    if args.last:
        results = params["paths"]["results"]
        attempts = doctor.last_attempts(results)
        if args.json:
            say(json.dumps([a.to_json() for a in attempts if a.failed], indent=2))
        else:
            for line in doctor.render_last(attempts, results):
                say(line)
        return 1 if any(a.failed for a in attempts) else 0
    profile = doctor.load_profile(
        args.profile or doctor.default_profile(), args.default_resources,
        args.slurm_status_command,
    )  # fmt: skip
    results = doctor.diagnose(params, profile, args.online, args.probe)
    if args.json:
        say(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for line in doctor.render(results, args.params, profile):
            say(line)
    return doctor.exit_code(results)
