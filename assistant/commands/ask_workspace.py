"""`shopsight ask` beside a running workspace: the question goes to the workspace's own chat.

DuckDB lets one process hold the event store for writing and refuses every other process, readers
included (tools/data/store_holder.py). So while `make run` is up, a second process cannot read the
shop. The workspace itself can: its chat is served at `/ask` (app.py), with the same agent, tools and
answer queue. `shopsight ask` therefore puts the question there and prints the answer, rather than
telling the user to stop the workspace.

    text, steps = ask_workspace("http://127.0.0.1:7860", "Which users will churn this week?")
"""

from __future__ import annotations

import re
import time

_CITE_LINK = re.compile(r"\[([^\]]+)\]\(#cite/[^)]*\)")  # the chat's evidence links: their text is what a terminal shows
ANSWER_TIMEOUT_S = 900.0  # a first answer on a cold 2-core laptop takes minutes; a hung one must not block forever


class WorkspaceUnreachable(Exception):
    """The running workspace could not be asked (not answering, a login it refused, or an error)."""


def last_chat(outputs: list) -> list:
    """The chat of an `/ask` job's outputs: the last output only marks the end ("Answered in ..."), so the
    chat is in the last one that holds it (bench/load_app.py reads it the same way)."""
    return next((out[0] for out in reversed(outputs) if isinstance(out, (list, tuple)) and out
                 and isinstance(out[0], list) and out[0]), [])


def message_text(content) -> str:
    """A chat message's text as plain terminal text: Gradio sends a string or a list of parts
    ({"type": "text", "text": ...}); the evidence links become their labels."""
    if isinstance(content, list):
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    elif isinstance(content, dict):
        content = content.get("text", "")
    return _CITE_LINK.sub(r"\1", str(content or ""))


def split_chat(chat: list) -> tuple[str, list[str]]:
    """(the answer's text, the titles of the tool steps before it) from the chat's messages as the API sends them."""
    steps, answer = [], ""
    for message in chat:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        title = (message.get("metadata") or {}).get("title")
        if title:
            steps.append(str(title))
        else:
            answer = message_text(message.get("content"))
    return answer, steps


def ask_workspace(url: str, question: str, auth: tuple[str, str] | None = None,
                  timeout_s: float = ANSWER_TIMEOUT_S) -> tuple[str, list[str]]:
    """Ask the workspace at `url` one question through its `/ask` endpoint; returns (answer, tool steps).

    Raises:
        WorkspaceUnreachable: with what went wrong and what to do.
    """
    from gradio_client import Client

    try:
        client = Client(url, auth=auth, verbose=False, download_files=False, analytics_enabled=False)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is reported the same way
        login = " (it asks for a login: set SHOPSIGHT_AUTH to the workspace's 'user:password')" if auth is None else ""
        raise WorkspaceUnreachable(f"the workspace at {url} could not be reached{login}: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}") from None
    job = client.submit(question, [], None, api_name="/ask")
    deadline = time.monotonic() + timeout_s
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel()
            raise WorkspaceUnreachable(f"the workspace at {url} gave no answer within {timeout_s:.0f} s; "
                                       "open it in a browser to see its queue")
        time.sleep(0.2)
    try:
        job.result()  # raises when the workspace reported an error
    except Exception as exc:  # noqa: BLE001
        raise WorkspaceUnreachable(f"the workspace at {url} failed on the question: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}") from None
    answer, steps = split_chat(last_chat(job.outputs()))
    if not answer:
        raise WorkspaceUnreachable(f"the workspace at {url} returned no answer; ask in the browser at {url}")
    return answer, steps
