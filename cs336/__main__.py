from cs336.cli import main

raise SystemExit(main())
