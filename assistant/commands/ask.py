"""`shopsight ask "question"`: one question to the analyst, for scripts.

Prints the answer (and its sources); with `--json`, the event stream as JSON lines, one
event per line with a `type` field, the last being `{"type": "answer", "text", "citations",
"grounded", "ungrounded", ...}`. With `--session FILE` the conversation is kept in FILE, so
a follow-up asked by a second `shopsight ask --session FILE` resolves against the first.

While a workspace (`make run`, `shopsight app`) holds the event store, no other process can read
it (DuckDB), so the question goes to that workspace's chat instead and its answer is printed
(assistant/commands/ask_workspace.py); `--json` and `--session` need the store itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ask` command."""
    parser = subparsers.add_parser(
        "ask", help="ask the analyst a question and print the grounded, cited answer",
        description="Ask the analyst one question about the shop in the event store.",
    )
    parser.add_argument("question", help='e.g. "Which users will churn this week and why?"')
    parser.add_argument("--json", action="store_true", help="print every event as one JSON line")
    parser.add_argument("--session", type=Path, default=None,
                        help="conversation file to continue and update (created if missing)")
    parser.add_argument("--max-steps", type=int, default=None, help="model calls per question (default: settings)")
    parser.add_argument("--answer-mode", choices=("brief", "model", "template"), default=None,
                        help="who writes the answer: brief (template at once, then a short model takeaway), "
                             "model (grounded, with fallbacks) or template (default: SHOPSIGHT_ANSWER_MODE, brief)")
    parser.add_argument("--no-tool-prior", action="store_true",
                        help="route on the model's likelihoods alone, without the exemplar prior (for comparison)")
    parser.add_argument("--no-router", action="store_true",
                        help="let the model choose the first tool freely (for comparison)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Build the workspace and the agent, then answer (errors the user can fix exit with the fix)."""
    from assistant.agent.loop import Agent
    from assistant.config import Settings
    from assistant.workspace import PartUnavailable, Workspace

    from tools.data.schema import StoreError
    from tools.data.store import EventStore
    from tools.data.store_holder import StoreHeldError

    settings = Settings.from_env()
    if not Path(settings.db_path).exists():
        raise SystemExit(f"no event store at {settings.db_path}; run `shopsight demo` (or `make run`) first")
    try:  # read-only: asking writes nothing, and other readers (a second ask, a case build) may share the file
        store = EventStore(settings.db_path, read_only=True)
    except StoreHeldError as exc:
        if exc.workspace_url and not (args.json or args.session):
            print(forwarded_note(exc.workspace_url, settings.adapter), file=sys.stderr)
            return _ask_running_workspace(exc.workspace_url, args.question, settings.auth, str(exc))
        raise SystemExit(f"shopsight ask: {exc}") from None
    except StoreError as exc:
        raise SystemExit(f"shopsight ask: {exc}") from None
    workspace = Workspace.open(settings, store=store)
    for part in ("predictor", "cases", "reviews"):
        if part in workspace.problems:
            print(f"note: {part}: {workspace.problems[part]}", file=sys.stderr)
    try:
        chat_model = workspace.chat_model()
    except PartUnavailable as exc:
        raise SystemExit(str(exc)) from exc
    prior = None
    if settings.tool_prior and not args.no_tool_prior and not args.no_router:
        from assistant.agent.tool_prior import default_prior

        prior = default_prior()
    agent = Agent(chat_model, workspace.tools, max_steps=args.max_steps or settings.max_agent_steps,
                  router=None if args.no_router else "auto", answer_mode=args.answer_mode or settings.answer_mode,
                  tool_prior=prior)
    answer = ask(agent, args.question, session_path=args.session, as_json=args.json)
    return 0 if answer is not None else 1


def forwarded_note(url: str, adapter: str) -> str:
    """Why the question goes to the running workspace, and which weights answer it.

    The workspace answers with the model and adapter it was started with: an engineer who sets
    SHOPSIGHT_ADAPTER for this command only would otherwise read the old weights' answer as the new one's.
    """
    note = (f"note: the running workspace at {url} holds the event store; asking it there (it answers with the "
            "model and adapter it was started with)")
    if adapter:
        note += (f"; SHOPSIGHT_ADAPTER={adapter} set here does not reach it: stop it and start `shopsight app` "
                 "with that setting to ask the new weights")
    return note


def _ask_running_workspace(url: str, question: str, auth_spec: str, held: str) -> int:
    """Print the running workspace's answer to `question` (its steps on stderr, as a local ask prints them)."""
    from assistant.commands.ask_workspace import WorkspaceUnreachable, ask_workspace
    from assistant.config import read_auth

    logins = read_auth(auth_spec)
    try:
        text, steps = ask_workspace(url, question, auth=logins[0] if logins else None)
    except WorkspaceUnreachable as exc:
        raise SystemExit(f"shopsight ask: {held}\n(asking the workspace directly failed: {exc})") from None
    for step in steps:
        print(f"-> {step.removeprefix('⚙ Tool ')}", file=sys.stderr)
    print(text)
    return 0


def ask(agent, question: str, session_path: Path | None = None, as_json: bool = False,
        out: TextIO | None = None, err: TextIO | None = None) -> dict | None:
    """Run one question through `agent`, print it, and update the session file.

    Args:
        agent: an `assistant.agent.loop.Agent`.
        question: the user's question.
        session_path: a conversation file to continue (and save after the answer).
        as_json: print JSON lines instead of the answer text.
        out: where the answer / JSON lines go (stdout).
        err: where progress lines go in text mode (stderr).

    Returns:
        The answer event as a dict, or None when the loop ended without one.
    """
    from assistant.agent.session import Session

    out = out or sys.stdout
    err = err or sys.stderr
    session = Session.load(session_path) if session_path else None
    answer = None
    notes_said = set()
    for event in agent.run(question, history=session.messages if session else None):
        if as_json:
            print(event.to_json(), file=out, flush=True)
        elif event.type == "tool_result":
            # Scores served from another checkpoint than the current one (tools/catalog/reads.py): the
            # answer may not repeat the tool's note, and its numbers are that checkpoint's.
            note = event["result"].get("scores_checkpoint_note") if isinstance(event["result"], dict) else None
            if note and note not in notes_said:
                notes_said.add(note)
                print(f"note: scores: {note}", file=err, flush=True)
        elif event.type == "tool_call":
            args = ", ".join(f"{k}={v!r}" for k, v in event["arguments"].items())
            print(f"-> {event['name']}({args})", file=err, flush=True)
        elif event.type == "error":
            print(f"   ({event['message']})", file=err, flush=True)
        if event.type == "answer":
            answer = event
    if answer is None:
        return None
    if not as_json:
        print(answer["text"], file=out)
        if answer["citations"]:
            sources = ", ".join(f"{c['kind']} {c['id']}" for c in answer["citations"])
            print(f"\nSources: {sources}", file=out)
        if answer["ungrounded"]:
            print(f"(left out, not backed by any tool result: {', '.join(answer['ungrounded'])})", file=err)
    if session is not None:
        session.messages = answer["messages"]
        session.save()
    return answer.to_dict()
