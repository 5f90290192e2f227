"""`modelyard tune`: a bounded configuration search that measures instead of guessing
(search.py drives it; space.py: the knobs; inprocess.py and front.py: the measurements; the
cache of picks is advisor/tuned.py, which every start reads)."""
