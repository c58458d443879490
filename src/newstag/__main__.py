from newstag.cli import main

raise SystemExit(main())
