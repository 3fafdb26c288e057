"""`streamswap serve`: swap jobs over HTTP, a page in the browser, and a live webcam swap over
WebRTC, behind a token (see the README's "Serving" section).

One module per job: `settings` (what the command was given), `auth` (the token), `ratelimit`,
`store` (job records in SQLite), `uploads` (streamed, capped uploads confined to the data dir),
`jobs` (runs the records through `streamswap.api`, at most N at a time), `live` (WebRTC),
`app` (the FastAPI app wiring them), `static/` (the pages: plain HTML and JS, no build step).
Importing this package needs nothing beyond the core; its submodules need the `serve` extra.
"""
