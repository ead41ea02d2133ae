"""UCI Census-Income (KDD): the multi-task benchmark of the MMoE (Ma et al., KDD 2018) and PLE papers.

Files: ``census-income.data.gz`` (199,523 rows) and ``census-income.test.gz`` (99,762 rows), 42 comma-separated
fields, no header. Tasks (all binary):

* ``income``: income label ``50000+.`` (> 50K);
* ``never_married``: marital status ``Never married``;
* ``education``: education at least college, defined here as an Associates degree or higher (Associates
  occupational/vocational or academic, Bachelors, Masters, Professional school, Doctorate).

``group=1`` is the papers' income + never-married pair, ``group=2`` education + never-married; ``tasks`` picks any
of the three instead. The columns the labels come from (education, marital status, income) never reach the
features, whatever tasks are chosen, and neither does the instance weight (a sampling weight, not an attribute of
the person). Every study and every task subset therefore sees the same features.

Feature protocol (``features``): ``strict`` (the default) also drops the three columns coded from marital status:
the two household columns (levels such as ``Child <18 never marr not in subfamily``, ``Spouse of householder``,
``Child under 18 ever married``) and ``tax_filer_stat``, whose "Joint ..." levels imply married (39,743 of the
99,762 test-file rows, none of them never married). ``paper`` keeps them: the MMoE paper removes only education and
marital status (and the labels) from the inputs, and public reproductions keep the household and tax-filer
columns. The 7 continuous columns are standardised, the other nominal ones (26 strict, 29 paper) one-hot encoded,
all with statistics of the training split.

Splits: ``split="paper"`` trains on the .data file and splits the .test file 1:1 at random (seeded) into
validation and test; ``split="random"`` pools whichever official files are present (downloading both when
neither is) and splits them by ``val_fraction``/``test_fraction`` (seeded), so the test file alone can be used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from bench.errors import UnknownChoice, UserError

from . import uci
from .base import MTLData
from .preprocess import read_records, to_numbers
from .registry import register_dataset
from .sources import OfficialFile

COLUMNS = [
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enrolled_in_edu_inst_last_wk", "marital_stat", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_a_labor_union",
    "reason_for_unemployment", "full_or_part_time_employment_stat", "capital_gains", "capital_losses",
    "dividends_from_stocks", "tax_filer_stat", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
]
CONTINUOUS = [
    "age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
    "num_persons_worked_for_employer", "weeks_worked_in_year",
]
# never features: the label sources and the sampling weight
EXCLUDED = ["education", "marital_stat", "income", "instance_weight"]
# coded from marital status: features only under features="paper"
CODED_FROM_LABELS = [
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "tax_filer_stat",
]
NOMINAL = [c for c in COLUMNS if c not in CONTINUOUS and c not in EXCLUDED]  # features="paper"

INCOME_LABELS = {"- 50000.": 0.0, "50000+.": 1.0}
NEVER_MARRIED = "Never married"
EDUCATION_LEVELS = {  # level -> at least college (Associates degree or higher)
    "Children": False, "Less than 1st grade": False, "1st 2nd 3rd or 4th grade": False,
    "5th or 6th grade": False, "7th and 8th grade": False, "9th grade": False, "10th grade": False,
    "11th grade": False, "12th grade no diploma": False, "High school graduate": False,
    "Some college but no degree": False,
    "Associates degree-occup /vocational": True, "Associates degree-academic program": True,
    "Bachelors degree(BA AB BS)": True, "Masters degree(MA MS MEng MEd MSW MBA)": True,
    "Prof school degree (MD DDS DVM LLB JD)": True, "Doctorate degree(PhD EdD)": True,
}
TASKS = ("income", "never_married", "education")
GROUPS = {1: ("income", "never_married"), 2: ("education", "never_married")}

FOLDER = "census-income-kdd"
FILES = {
    "data": OfficialFile(
        "census-income.data.gz", FOLDER, "census-income-mld/census-income.data.gz", rows=199_523, fields=42
    ),
    "test": OfficialFile(
        "census-income.test.gz", FOLDER, "census-income-mld/census-income.test.gz", rows=99_762, fields=42,
        sha256=("5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659",),
    ),
}


def parse_file(path: Path) -> pl.DataFrame:
    """One official file: feature columns (continuous as floats, nominal as strings) and the 3 labels as 0/1."""
    frame = read_records(path, COLUMNS)
    bad_income = frame.filter(~pl.col("income").is_in(list(INCOME_LABELS)))
    if len(bad_income):
        raise UserError(
            f"{path}:{bad_income['line'][0]}: income label {bad_income['income'][0]!r} is neither "
            f"{' nor '.join(map(repr, INCOME_LABELS))}"
        )
    bad_edu = frame.filter(~pl.col("education").is_in(list(EDUCATION_LEVELS)))
    if len(bad_edu):
        raise UserError(
            f"{path}:{bad_edu['line'][0]}: unknown education level {bad_edu['education'][0]!r}; valid choices: "
            + ", ".join(sorted(EDUCATION_LEVELS))
        )
    frame = to_numbers(frame, CONTINUOUS, path)
    return frame.with_columns(
        pl.col("income").replace_strict(INCOME_LABELS, return_dtype=pl.Float32).alias("y_income"),
        (pl.col("marital_stat") == NEVER_MARRIED).cast(pl.Float32).alias("y_never_married"),
        pl.col("education").replace_strict(EDUCATION_LEVELS, return_dtype=pl.Boolean)
        .cast(pl.Float32).alias("y_education"),
    )


def choose_tasks(group: int, tasks) -> list[str]:
    if group not in GROUPS:
        raise UnknownChoice("census-income group", str(group), [str(g) for g in GROUPS])
    names = uci.task_names("census-income", tasks, TASKS)
    if names is None:
        return list(GROUPS[group])
    if group != 1:
        raise UserError("census-income: give either group or tasks, not both")
    return names


UCI = uci.UCIDataset(
    name="census-income", files=FILES, parse_file=parse_file, continuous=CONTINUOUS, nominal=NOMINAL, tasks=TASKS,
    excluded=EXCLUDED, coded_from_labels=CODED_FROM_LABELS, official_split="paper", module=sys.modules[__name__],
    info={"education_task": "Associates degree or higher"},
)


@register_dataset("census-income")
def census_income(
    *,
    data_dir: str = "",
    group: int = 1,
    tasks: list[str] | None = None,
    split: str = "paper",
    features: str = "strict",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    encoding: str = "onehot",
    min_count: int = 5,
    download: bool = True,
    cache: bool = True,
) -> MTLData:
    """UCI Census-Income (KDD): income > 50K, never married, education >= Associates degree."""
    names = choose_tasks(group, tasks)
    data = uci.load(
        UCI, split=split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, data_dir=data_dir,
        download=download, cache=cache, features=features, encoding=encoding, min_count=min_count,
    )
    data = data.select_tasks(names)
    data.info["tasks"] = names
    return data
