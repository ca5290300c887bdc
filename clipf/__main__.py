from clipf.cli import main

raise SystemExit(main())
