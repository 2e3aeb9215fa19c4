"""The HTTP request each endpoint type gets for an alert, as Komodo sends it (``bin/core/src/
alert/``). Pure.

- **Ntfy** (``ntfy.rs``): ``POST URL`` (the topic's URL), the text as the body, header
  ``Title`` (Komodo's says ``Komodo Alert``; here ``stackward alert``) and ``X-Email`` when
  ``email`` is set; ``Content-Type: text/plain; charset=utf-8`` (Komodo sends none).
- **Discord** (``discord.rs``): ``POST URL`` (the webhook), JSON ``{"content": TEXT}`` (cut to
  Discord's 2,000 characters, which it refuses past).
- **Slack** (``slack.rs``, ``slack_client_rs``): ``POST URL`` (the app's webhook), JSON
  ``{"text": TEXT, "blocks": [header, section]}``: a ``header`` block of ``plain_text`` and a
  ``section`` block of ``mrkdwn`` (cut to Slack's 150 and 3,000 characters).
- **Custom** (``mod.rs``, ``send_custom_alert``): ``POST URL`` with the alert as Komodo's JSON
  (:func:`core.alerts.model.komodo_json`).

Komodo's ``Pushover`` is not sent (``validate`` says so). URLs carry their tokens (a Discord or
Slack webhook is a secret): an :class:`Outgoing` never shows its URL in its ``repr``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from core.alerts import content
from core.alerts.model import Alert, komodo_json
from core.resources import schema as S

NTFY_TITLE: Final = "stackward alert"
DISCORD_MAX: Final = 2000
SLACK_HEADER_MAX: Final = 150
SLACK_SECTION_MAX: Final = 3000
ENDPOINT_TYPES: Final = ("Custom", "Slack", "Discord", "Ntfy", "Pushover")
SENT: Final = ("Custom", "Slack", "Discord", "Ntfy")
JSON: Final = {"Content-Type": "application/json"}
DEFAULT_URLS: Final = S.ALERTER_DEFAULT_URLS


class Outgoing(msgspec.Struct, frozen=True):
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:  # the URL is a credential
        return f"Outgoing(<url>, {self.headers}, {len(self.body)} bytes)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_json = msgspec.json.Encoder()


def request_for(kind: str, url: str, alert: Alert, email: str = "") -> Outgoing | None:
    """The request for an endpoint of type ``kind`` at ``url`` (interpolated); None for a
    type that is not sent."""
    match kind:
        case "Ntfy":
            headers = {"Title": NTFY_TITLE, "Content-Type": "text/plain; charset=utf-8"}
            if email:
                headers["X-Email"] = email
            return Outgoing(url, headers, content.standard(alert).encode())
        case "Discord":
            body = {"content": _cut(content.discord(alert), DISCORD_MAX)}
            return Outgoing(url, JSON, _json.encode(body))
        case "Slack":
            text, header, section = content.slack(alert)
            blocks: list[dict[str, object]] = [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": _cut(header, SLACK_HEADER_MAX)},
                }
            ]
            if section:
                blocks.append(
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": _cut(section, SLACK_SECTION_MAX)},
                    }
                )
            return Outgoing(url, JSON, _json.encode({"text": text, "blocks": blocks}))
        case "Custom":
            return Outgoing(url, JSON, komodo_json(alert))
    return None
