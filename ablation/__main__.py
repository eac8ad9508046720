import gc

from ablation.cli import main

code = main()
# What the command built is left to the operating system: the interpreter's last collections
# walk every object of every loaded library (torch, MLflow, pandas, matplotlib) and took
# 1.5-3.5 s of each command's exit (benchmarks/RESULTS.md, section 5). Files and stores are
# closed by the command itself; objects without cycles are still freed as modules clear.
gc.freeze()
raise SystemExit(code)
