"""Unsubscribe links: a GET shows one button and changes nothing; the POST unsubscribes.

`POST /u/<token>` with the form body `List-Unsubscribe=One-Click` is RFC 8058's one-click
unsubscribe, sent by mail providers with no cookie and no login; the page's own button
posts the same body. A token works for as long as the secret key stays the same.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from outreach import service, tokens
from outreach.app import App
from outreach.clock import utcnow

router = APIRouter(tags=["unsubscribe"])
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ONE_CLICK = "List-Unsubscribe=One-Click"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _valid(app: App, token: str) -> bool:
    payload = tokens.verify(token, app.secret)
    return bool(payload and payload.startswith("u:"))


async def _one_click(request: Request) -> bool:
    """RFC 8058: the form (urlencoded or multipart) has List-Unsubscribe=One-Click."""
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:
        return False
    return form.get("List-Unsubscribe") == "One-Click"


@router.get("/u/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request) -> HTMLResponse:
    """The page with one button; opening it (or a mail scanner fetching it) changes nothing."""
    if not _valid(request.app.state.outreach, token):
        raise HTTPException(404, "unknown link")
    body = (
        "<p>Stop receiving these emails?</p>"
        f'<form method="post" action="/u/{html.escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=body), headers=_HEADERS)


@router.post("/u/{token}", response_class=HTMLResponse)
async def one_click(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click: suppress the address and end every enrollment at once."""
    app: App = request.app.state.outreach
    if not _valid(app, token):
        raise HTTPException(404, "unknown link")
    if not await _one_click(request):
        raise HTTPException(400, f"the body must be {ONE_CLICK}")
    email = service.unsubscribe_by_token(app, token, utcnow())
    if email is None:
        raise HTTPException(404, "unknown link")
    done = f"<p>{html.escape(email)} will not receive these emails again.</p>"
    return HTMLResponse(_PAGE.format(title="You are unsubscribed", body=done), headers=_HEADERS)
