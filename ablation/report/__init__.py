"""Reports: a study's MLflow runs -> statistics, plots and ``reports/<study>.md``.

Pipeline (each step pure and testable on its own): ``load_study`` (runs as
DataFrames) -> ``analyse`` (summaries, paired tests, Holm, fairness, verdict)
-> ``draw_figures`` (PNG) -> ``render`` (markdown); ``build_report`` runs it
all and refreshes the index ``reports/README.md``. Each kind of study has a
report kind (``kinds``): a search (``sampler = "tpe"``) takes
``analyse_tuning`` -> its figures -> ``render_tuning`` (modules ``search*``):
best trial, search history, confirmation commands. Every kind shares ``common``: the marker line the index reads, the header and
fairness banner, the setup table, the fairness / figures / reproduce sections
and the formatting of values; fairness checks read the study's info and the
runs it compares. A study with an epoch cap adds its budget check
(``budget``: would a longer cap change a decision?) to its analysis and report.
"""

from ablation.report.analysis import Analysis, analyse
from ablation.report.build import (
    build_all, build_report, draw_figures, draw_tuning_figures, write_index, write_report,
)
from ablation.report.load import ReportError, StudyInfo, StudyRuns, load_study
from ablation.report.stats import holm, mean_ci, paired_vs_baseline, summarise
from ablation.report.search import SearchParam, TuningAnalysis, analyse_tuning, trial_table
from ablation.report.search_markdown import render_tuning
from ablation.report.search_verdict import TuningVerdict, confirm_commands
from ablation.report.verdict import Verdict, compute_verdict

__all__ = [
    "Analysis", "ReportError", "SearchParam", "StudyInfo", "StudyRuns", "TuningAnalysis", "TuningVerdict", "Verdict",
    "analyse", "analyse_tuning", "build_all", "build_report", "compute_verdict", "confirm_commands", "draw_figures",
    "draw_tuning_figures", "holm", "load_study", "mean_ci", "paired_vs_baseline", "render_tuning", "summarise",
    "trial_table", "write_index", "write_report",
]
