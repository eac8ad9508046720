"""Running a study, one concept a module (as Optuna lays out ``study/``,
``samplers/``, ``storages/``):

- ``spec``: the study file's declaration and the resolved ``Study``;
  ``space``: search dimensions; ``arms``: factors crossed into arms and cells;
  ``load``: reading a study file into a ``Study``.
- ``kinds``: kinds of study as registered objects (``grid``, ``search``,
  ``tuned``); each says how it is checked, laid out, prepared and run.
- ``cells``: a cell's states, claim and run; ``seeds``: the seed policy and
  the decisions so far; ``engine``: preparing a study and the worker loop;
  ``workers``: worker processes; ``parent``: the study's MLflow parent run;
  ``budget``: training what a study's budget check needs (a longer cap).
- ``_optuna``: Optuna behind one private module (the only one importing it).
"""

from ablation.study.load import list_studies, load_study, study_path
from ablation.study.spec import SEED_PARAM, Arm, Cell, Study, StudySpec

__all__ = ["Arm", "Cell", "SEED_PARAM", "Study", "StudySpec", "list_studies", "load_study", "study_path"]
