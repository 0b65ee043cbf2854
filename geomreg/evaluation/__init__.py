"""Accuracy evaluation: warped instances of dataset pairs, robust homography fits and their scores.

metrics (fit_homography, grid_rmse, score_matches: also used by training validation), instances
(warped / raw evaluation instances with valid-overlap masks), methods (geomreg's matchers as benchmark
methods), runner (run and score matchers on a dataset split), report (summaries, markdown/CSV/JSON).
Nothing is imported here so that ``geomreg.evaluation.metrics`` stays cheap to import.
"""
