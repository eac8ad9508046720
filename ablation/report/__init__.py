"""Reports: a study's MLflow runs -> statistics, plots and ``reports/<study>.md``.

Pipeline (each step pure and testable on its own): ``load_study`` (runs as
DataFrames) -> ``analyse`` (summaries, paired tests, Holm, fairness, verdict)
-> ``draw_figures`` (PNG) -> ``render`` (markdown); ``build_report`` runs it
all and refreshes the index ``reports/README.md``.
"""

from ablation.report.analysis import Analysis, analyse
from ablation.report.build import build_all, build_report, draw_figures, write_index, write_report
from ablation.report.load import ReportError, StudyInfo, StudyRuns, load_study
from ablation.report.stats import holm, mean_ci, paired_vs_baseline, summarise
from ablation.report.verdict import Verdict, compute_verdict

__all__ = [
    "Analysis", "ReportError", "StudyInfo", "StudyRuns", "Verdict",
    "analyse", "build_all", "build_report", "compute_verdict", "draw_figures", "holm", "load_study",
    "mean_ci", "paired_vs_baseline", "summarise", "write_index", "write_report",
]
