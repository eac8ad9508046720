from ablation.cli import main

raise SystemExit(main())
