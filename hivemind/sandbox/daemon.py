"""`python -m hivemind.sandbox.daemon --home DIR`: the sandbox daemon (see server.main)."""

from __future__ import annotations

from hivemind.sandbox.server import main

if __name__ == "__main__":
    raise SystemExit(main())
