"""releasectl: publish release events and follow releases to their end.

    releasectl publish -f release.json --key-id ci2026 --namespace contoso-releases --api https://… --wait
    releasectl watch web-1.4.2 --api https://…
    releasectl approve web-1.4.2 --reason "checked the dashboards" --api https://…

Exit codes are in ``releasectl.outcomes.Exit`` (and ``releasectl --help``); ``--output json`` prints
the controller's documents. Secrets come from the environment only: RELEASECTL_FUNCTION_KEY,
RELEASECTL_SIGNING_KEY, RELEASECTL_IDENTITY_TOKEN, RELEASECTL_SERVICEBUS_CONNECTION.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from releasectl import bus, events, signing
from releasectl.client import Api, CommandError
from releasectl.follow import follow
from releasectl.outcomes import MEANINGS, Exit
from shared.domain.durations import parse_duration

OVERRIDES = ("pause", "resume", "promote", "rollback", "approve", "retry", "ignore-schedule", "release-site")


def _seconds(text: str) -> float:
    try:
        return float(parse_duration(text if not text.isdigit() else int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 5m, 1h30m)") from None


def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code.value}  {MEANINGS[code]}" for code in Exit)
    parser = argparse.ArgumentParser(
        prog="releasectl",
        description="Publish release events to the release controller and follow releases to their end.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=os.environ.get("RELEASECTL_API"), help="the controller's URL (RELEASECTL_API)")
    common.add_argument(
        "--audience",
        default=os.environ.get("RELEASECTL_AUDIENCE"),
        help="ask azure-identity for an Entra ID token for this app (App Service authentication on)",
    )
    common.add_argument("--output", choices=["text", "json"], default="text")
    following = argparse.ArgumentParser(add_help=False)
    following.add_argument("--timeout", type=_seconds, default=3600.0, help="how long to follow (1h)")
    following.add_argument("--interval", type=_seconds, default=5.0, help="between two looks (5s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    publish = commands.add_parser(
        "publish", parents=[common, following], help="validate, sign and send a release event"
    )
    publish.add_argument("-f", "--file", help="the event, JSON or YAML (- for stdin); flags override its fields")
    for flag in ("release-id", "version", "subscription", "resource-group", "site", "slot", "image", "package"):
        publish.add_argument(f"--{flag}")
    publish.add_argument("--set", action="append", metavar="NAME=VALUE", help="an app setting (repeatable)")
    publish.add_argument("--strategy", choices=["canary", "blueGreen"])
    publish.add_argument("--steps", help="canary steps, WEIGHT:BAKE,… (10:5m,50:10m)")
    publish.add_argument("--guard", help="watch production this long after the swap")
    publish.add_argument("--promotion", choices=["auto", "manual"])
    publish.add_argument("--approve-before-traffic", action="store_true")
    publish.add_argument("--check", action="append", metavar="PATH", help="a validation check path (repeatable)")
    proof = publish.add_mutually_exclusive_group()
    proof.add_argument("--key-id", help="sign with this key id; the key is in RELEASECTL_SIGNING_KEY")
    proof.add_argument(
        "--oidc",
        choices=["github", "azure-devops", "env"],
        help="prove the pipeline with its OIDC token (env: the token is in RELEASECTL_IDENTITY_TOKEN)",
    )
    proof.add_argument("--unsigned", action="store_true", help="over HTTP only: a signed-in submitter sends it")
    publish.add_argument("--oidc-audience", help="the audience the policy's issuer expects (GitHub)")
    publish.add_argument(
        "--via",
        choices=["servicebus", "http"],
        help="how to send it (servicebus when --namespace or RELEASECTL_SERVICEBUS_CONNECTION is given, else http)",
    )
    publish.add_argument("--namespace", help="the Service Bus namespace (DefaultAzureCredential)")
    publish.add_argument("--topic", default="release-events")
    publish.add_argument("--wait", action="store_true", help="follow the release to its end; exit with its outcome")
    publish.add_argument("--watch", action="store_true", help="like --wait, showing live progress")

    for name, what in (("wait", "follow a release to its end"), ("watch", "follow a release, showing live progress")):
        command = commands.add_parser(name, parents=[common, following], help=what)
        command.add_argument("release_id")
    for name, what in (("status", "one release"), ("audit", "a release's audit trail")):
        command = commands.add_parser(name, parents=[common], help=what)
        command.add_argument("release_id")
    listing = commands.add_parser("list", parents=[common], help="releases, newest first per site")
    for flag in ("site", "subscription", "resource-group", "phase", "limit", "cursor"):
        listing.add_argument(f"--{flag}")
    rejections = commands.add_parser("rejections", parents=[common], help="events the controller refused on a day")
    rejections.add_argument("--day", help="YYYY-MM-DD, UTC (today)")
    rejections.add_argument("--limit", type=int)
    commands.add_parser("policy", parents=[common], help="the release policy in force")
    commands.add_parser("schema", parents=[common], help="the release event's JSON Schema (no controller needed)")
    redeploy = commands.add_parser(
        "redeploy", parents=[common], help="run a site's last good release on another site (disaster recovery)"
    )
    redeploy.add_argument("--from", dest="source", required=True, help="SUBSCRIPTION/RESOURCE_GROUP/SITE")
    redeploy.add_argument("--to", required=True, help="SUBSCRIPTION/RESOURCE_GROUP/SITE[/SLOT]")
    redeploy.add_argument("--reason", required=True, help="why, for the audit")
    quarantine = commands.add_parser("quarantine", parents=[common], help="versions refused after a rollback")
    quarantine.add_argument("action", choices=["list", "lift"])
    quarantine.add_argument("site", nargs="?", help="lift: SUBSCRIPTION/RESOURCE_GROUP/SITE")
    quarantine.add_argument("version", nargs="?", help="lift: the version")
    quarantine.add_argument("--reason", help="lift: why, for the audit")
    rollout = commands.add_parser("rollout", parents=[common, following], help="a release over several sites, in waves")
    rollout.add_argument("action", choices=["publish", "status", "watch"])
    rollout.add_argument("rollout_id", nargs="?", help="status/watch: the rollout's id")
    rollout.add_argument("-f", "--file", help="publish: the rollout event, JSON or YAML")
    rollout_proof = rollout.add_mutually_exclusive_group()
    rollout_proof.add_argument("--key-id", help="sign with this key id; the key is in RELEASECTL_SIGNING_KEY")
    rollout_proof.add_argument("--oidc", choices=["github", "azure-devops", "env"])
    rollout_proof.add_argument("--unsigned", action="store_true")
    rollout.add_argument("--oidc-audience")
    control = commands.add_parser("control", parents=[common], help="the global stop switch (admin)")
    control.add_argument("action", choices=["show", "stop", "start"])
    control.add_argument("--reason", help="stop/start: why, for the record")
    for name in OVERRIDES:
        command = commands.add_parser(name, parents=[common], help=f"{name} a release (recorded with the reason)")
        command.add_argument("release_id")
        command.add_argument("--reason", required=True, help="why, for the audit")
        if name == "promote":
            command.add_argument("--full", action="store_true", help="skip the remaining steps: swap now")
    return parser


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.output == "json" else text)


def _api(args: argparse.Namespace) -> Api:
    if not args.api:
        raise CommandError(Exit.USAGE, "the controller's URL: --api, or RELEASECTL_API")
    return Api(args.api, audience=args.audience)


def _follow(args: argparse.Namespace, api: Api, release_id: str, *, live: bool, published: bool) -> int:
    from releasectl import render

    if live and args.output == "text":
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=True)
        with Live(console=console, refresh_per_second=4, transient=False) as screen:

            def show(view: dict[str, Any]) -> None:
                screen.update(render.live_view(view, api.audit(release_id)))

            code, view = follow(
                api, release_id, timeout=args.timeout, interval=args.interval, published=published, show=show
            )
    else:
        code, view = follow(api, release_id, timeout=args.timeout, interval=args.interval, published=published)
    _print(args, view, render.status_text(view) if view else release_id)
    if code is not Exit.SUCCEEDED:
        print(f"releasectl: {MEANINGS[code]}", file=sys.stderr)
    return int(code)


def _publish(args: argparse.Namespace) -> int:
    from releasectl import render

    doc = events.build(args)
    raw, release_id = events.encode(doc)
    properties = signing.proof(raw, args)
    via = args.via or ("servicebus" if args.namespace or os.environ.get(bus.CONNECTION_ENV) else "http")
    if via == "http":
        view = _api(args).submit(raw, signing.as_headers(properties))
        if not (args.wait or args.watch):
            _print(args, view, render.status_text(view))
            return int(Exit.SUCCEEDED)
    else:
        if args.unsigned:
            raise CommandError(Exit.USAGE, "--unsigned: an event on Service Bus must be signed (--key-id or --oidc)")
        bus.send(
            raw,
            release_id=release_id,
            session_id=events.session_id(doc),
            properties=properties,
            topic=args.topic,
            namespace=args.namespace,
            timeout=min(args.timeout, 60.0),
        )
        if not (args.wait or args.watch):
            _print(args, {"releaseId": release_id, "sent": "servicebus"}, f"published {release_id} on Service Bus")
            return int(Exit.SUCCEEDED)
    return _follow(args, _api(args), release_id, live=args.watch, published=via == "servicebus")


def _site_path(text: str, flag: str, *, slot: bool = False) -> dict[str, str]:
    parts = text.strip("/").split("/")
    if len(parts) not in ((3, 4) if slot else (3,)) or not all(parts):
        shape = "SUBSCRIPTION/RESOURCE_GROUP/SITE" + ("[/SLOT]" if slot else "")
        raise CommandError(Exit.USAGE, f"{flag}: {shape}, got {text!r}")
    target = {"subscriptionId": parts[0], "resourceGroup": parts[1], "site": parts[2]}
    if len(parts) == 4:
        target["slot"] = parts[3]
    return target


def _site_key(text: str, flag: str) -> str:
    t = _site_path(text, flag)
    return f"{t['subscriptionId']}~{t['resourceGroup']}~{t['site']}".lower()


ROLLOUT_EXIT = {"succeeded": Exit.SUCCEEDED, "stopped": Exit.ROLLED_BACK, "rolledBack": Exit.ROLLED_BACK}


def _rollout_text(view: dict[str, Any]) -> str:
    wave = view.get("wave") or {}
    lines = [f"{view['rolloutId']} {view['phase']} (wave {wave.get('index')} of {wave.get('of')})"]
    if view.get("reason"):
        lines.append(f"  {view['reason']}")
    for site in view.get("sites", []):
        status = site.get("status") or site["state"]
        lines.append(f"  wave {site['wave']}  {site['site']:24s} {site['state']:12s} {status}")
    return "\n".join(lines)


def _rollout(args: argparse.Namespace, api: Api) -> int:
    if args.action == "publish":
        if not args.file:
            raise CommandError(Exit.USAGE, "rollout publish -f FILE")
        raw = json.dumps(events._load(args.file), separators=(",", ":")).encode()
        view = api.submit_rollout(raw, signing.as_headers(signing.proof(raw, args)))
        _print(args, view, _rollout_text(view))
        return int(Exit.SUCCEEDED)
    if not args.rollout_id:
        raise CommandError(Exit.USAGE, f"rollout {args.action} ROLLOUT_ID")
    view = api.rollout(args.rollout_id)
    if args.action == "status":
        _print(args, view, _rollout_text(view))
        return int(Exit.SUCCEEDED)
    deadline = follow_clock() + args.timeout
    shown = None
    while view["phase"] not in ROLLOUT_EXIT:
        text = _rollout_text(view)
        if text != shown and args.output == "text":
            print(text, file=sys.stderr)
            shown = text
        if follow_clock() >= deadline:
            _print(args, view, text)
            return int(Exit.TIMED_OUT)
        follow_pause(args.interval)
        view = api.rollout(args.rollout_id)
    _print(args, view, _rollout_text(view))
    return int(ROLLOUT_EXIT[view["phase"]])


def _is_rollout(api: Api, rollout_id: str) -> bool:
    from urllib.parse import quote

    return api.call("GET", f"/rollouts/{quote(rollout_id, safe='')}", missing_ok=True) is not None


def follow_clock() -> float:
    from releasectl import follow as following

    return following.monotonic()


def follow_pause(seconds: float) -> None:
    from releasectl import follow as following

    following.pause(seconds)


def run(args: argparse.Namespace) -> int:
    from releasectl import render

    command = args.command
    if command == "schema":
        from shared.domain.schema import exported_schema

        print(exported_schema().text, end="")
        return int(Exit.SUCCEEDED)
    if command == "publish":
        return _publish(args)
    api = _api(args)
    if command in ("wait", "watch"):
        if api.release(args.release_id, missing_ok=True) is None and _is_rollout(api, args.release_id):
            args.action, args.rollout_id = "watch", args.release_id
            return _rollout(args, api)  # the id names a rollout: follow every site
        return _follow(args, api, args.release_id, live=command == "watch", published=False)
    if command == "status":
        view = api.release(args.release_id)
        _print(args, view, render.status_text(view or {}))
    elif command == "audit":
        entries = api.audit(args.release_id)
        _print(args, entries, render.audit_text(entries))
    elif command == "list":
        page = api.releases(
            site=args.site,
            subscriptionId=args.subscription,
            resourceGroup=args.resource_group,
            phase=args.phase,
            limit=args.limit,
            cursor=args.cursor,
        )
        _print(args, page, render.releases_text(page))
    elif command == "rejections":
        page = api.rejections(day=args.day, limit=args.limit)
        _print(args, page, render.rejections_text(page))
    elif command == "redeploy":
        to = _site_path(args.to, "--to", slot=True)
        view = api.redeploy(_site_key(args.source, "--from"), to, args.reason)
        _print(args, view, f"redeploy: {view.get('releaseId')}\n{render.status_text(view)}")
    elif command == "quarantine":
        if args.action == "list":
            doc = api.quarantine()
            lines = [
                f"{q['site']:24s} {q['version']:16s} {q['at']}  {q['releaseId']}: {q['reason']}" for q in doc["items"]
            ]
            _print(args, doc, "\n".join(lines) or "nothing quarantined")
        else:
            if not (args.site and args.version and args.reason):
                raise CommandError(Exit.USAGE, "quarantine lift SUBSCRIPTION/RESOURCE_GROUP/SITE VERSION --reason …")
            doc = api.lift_quarantine(_site_key(args.site, "site"), args.version, args.reason)
            _print(args, doc, f"lifted: {args.version} may be released on {doc['lifted']['site']} again")
    elif command == "rollout":
        return _rollout(args, api)
    elif command == "control":
        if args.action != "show" and not args.reason:
            raise CommandError(Exit.USAGE, f"control {args.action} --reason …")
        doc = api.control(None if args.action == "show" else args.action, args.reason)
        state = (
            f"STOPPED by {doc['by']} at {doc['at']}: {doc['reason']}" if doc.get("stopped") else "releases may advance"
        )
        _print(args, doc, state)
    elif command == "policy":
        doc = api.policy()
        _print(args, doc, json.dumps(doc.get("policy"), indent=2) + f"\n(digest {doc.get('digest')})")
    else:
        action = "promote-full" if command == "promote" and args.full else command
        view = api.override(args.release_id, action, args.reason)
        said = f"{action}: recorded" if command != "retry" else f"retry: {view.get('releaseId')} created"
        _print(args, view, f"{said}\n{render.status_text(view)}")
    return int(Exit.SUCCEEDED)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except CommandError as exc:
        if args.output == "json":
            print(json.dumps({"error": str(exc), "exitCode": int(exc.code), "problem": exc.problem}), file=sys.stderr)
        else:
            print(f"releasectl: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
