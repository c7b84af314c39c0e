"""The tests start Python many times (train.py, eval.py, predict.py, DDP ranks). Where PYTHONDONTWRITEBYTECODE=1 is
set, as on these machines, each start would compile torch and Lightning from source again (18 s instead of 7 here):
let Python keep what it compiles, in this process and in those it starts."""
import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
