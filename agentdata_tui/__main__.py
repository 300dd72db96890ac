from __future__ import annotations

from agentdata_tui.cli import main

raise SystemExit(main())
