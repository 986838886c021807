from spanlib.cli import main

raise SystemExit(main())
