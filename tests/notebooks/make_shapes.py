"""Notebooks in the shapes data scientists really write: ``python tests/notebooks/make_shapes.py``.

``make_fixtures.py`` varies the flagship one line at a time; the notebooks here are
whole notebooks of another shape (another library, the model's own classes, values
learned from data), each written as its author would, one function per shape in
``SHAPES``. ``main()`` writes ``tests/notebooks/<name>.ipynb`` for every one of them
(or only the names given on the command line).
"""

from __future__ import annotations

import sys
from typing import Callable

# Run as a script, this folder is on sys.path: reuse the flagship's writer and ids.
from make_fixtures import HERE, write
from nbformat.v4 import new_code_cell, new_markdown_cell


def _cells(parts: list[tuple[str, str]]) -> list:
    """Cells from ``(kind, text)``: ``markdown``, ``code`` or ``parameters`` (a code cell
    tagged as papermill's parameters cell)."""
    cells = []
    for kind, text in parts:
        if kind == "markdown":
            cells.append(new_markdown_cell(text))
            continue
        cell = new_code_cell(text)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    return cells


# --- LightGBM on pandas categorical columns (test_e2e_lightgbm.py) ------------------------
# A churn model as a data scientist writes it: the data generated with numpy, the
# channels and regions as pandas categoricals that LightGBM splits on natively, the
# drafted checks left as drafted (so a channel training never had only warns).

def lightgbm_categorical() -> list:
    """A LightGBM classifier on pandas categoricals, with checks, rules and a guardrail."""
    return _cells([
        ("markdown", "# Customer churn with LightGBM\n\nSynthetic subscriptions "
                     "(generated below, so the notebook runs anywhere). The sales channel "
                     "and the region are pandas categoricals, which LightGBM splits on "
                     "without one-hot encoding."),
        ("code", """\
import lightgbm as lgb
import nb2prod as n2p
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split"""),
        ("parameters", """\
n_customers = 3000
seed = 11
n_estimators = 40     # small: the tests build this notebook for real
learning_rate = 0.1
min_roc_auc = 0.7     # evaluation gate"""),
        ("markdown", "## Data\nNot exported: runs at build and retrain time only."),
        ("code", """\
rng = np.random.default_rng(seed)
n = n_customers
channel = rng.choice(["web", "store", "phone"], n, p=[0.5, 0.3, 0.2])
region = rng.choice(["north", "south", "east", "west"], n)
tenure_months = rng.integers(1, 72, n)
monthly_spend = np.round(rng.gamma(4.0, 12.0, n), 2)
support_calls = rng.poisson(np.where(channel == "phone", 2.5, 1.0))
logit = (-1.0 + 0.45 * support_calls - 0.04 * tenure_months + 0.01 * monthly_spend
         + np.select([channel == "phone", channel == "store"], [0.8, -0.4], 0.0)
         + np.where(region == "south", 0.5, 0.0) + rng.normal(0, 0.7, n))
churned = (logit > 0).astype(int)
customers = pd.DataFrame({
    "channel": pd.Categorical(channel, categories=["web", "store", "phone"]),
    "region": pd.Categorical(region),
    "tenure_months": tenure_months,
    "monthly_spend": monthly_spend,
    "support_calls": support_calls,
})
X_train, X_test, y_train, y_test = train_test_split(customers, churned, test_size=0.25,
                                                    random_state=seed, stratify=churned)
customers.dtypes"""),
        ("code", """\
# Who churns, by channel?
customers.assign(churned=churned).groupby("channel", observed=True)["churned"].mean().round(2)"""),
        ("markdown", "## The input contract\nDrafted from the training data: a channel or "
                     "region it never had, like a spend far outside its range, only warns."),
        ("code", """\
checks = n2p.expect(X_train)
checks"""),
        ("markdown", "## Model\nNot exported: the fitted booster travels as the saved model."),
        ("code", """\
model = lgb.LGBMClassifier(n_estimators=n_estimators, learning_rate=learning_rate,
                           num_leaves=15, random_state=seed, verbose=-1)
model.fit(X_train, y_train)  # the categorical columns are used as categories, natively
proba = model.predict_proba(X_test)[:, 1]
scores = {"roc_auc": roc_auc_score(y_test, proba), "accuracy": accuracy_score(y_test, proba >= 0.5)}
scores"""),
        ("markdown", "## Serving code\nExported to the service."),
        ("code", """\
CHURN_AT = 0.5
MANY_CALLS = 4


@n2p.model
def churn_risk(model, X: pd.DataFrame) -> pd.DataFrame:
    p = model.predict_proba(X)[:, 1]
    return pd.DataFrame({"churn": p >= CHURN_AT, "probability": p.round(4)})


@n2p.fallback
def retention_rules(X: pd.DataFrame) -> pd.DataFrame:
    \"\"\"The retention team's rule: many support calls, or new and on the phone line.\"\"\"
    calls = X["support_calls"].to_numpy()
    new_by_phone = (X["tenure_months"].to_numpy() < 6) & (X["channel"] == "phone").to_numpy()
    return pd.DataFrame({"churn": (calls >= MANY_CALLS) | new_by_phone, "probability": np.nan})


@n2p.guardrail
def probability_is_a_probability(X: pd.DataFrame, result: pd.DataFrame) -> np.ndarray:
    p = result["probability"].to_numpy()
    return (p >= 0) & (p <= 1)"""),
        ("code", """\
n2p.save_model("lightgbm_categorical", model, reference=X_train, metrics=scores,
               gate={"roc_auc": min_roc_auc}, examples=X_test.head(5), checks=checks)"""),
    ])


# --- the model's own classes, constants built by calls, values learned from data ------------
# Loan defaults, as a data scientist writes them: the data generated with numpy (a few
# incomes missing), a pipeline holding a transformer class and a function written in the
# notebook, constants made by calls, and serving code that uses what training learned.
# One base notebook; each scenario swaps in the serving code of its shape
# (test_capture.py, test_e2e_shapes.py).

LOAN_IMPORTS = """\
import re
from dataclasses import dataclass

import nb2prod as n2p
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler"""

LOAN_DATA = """\
rng = np.random.default_rng(seed)
n = n_applicants
applicants = pd.DataFrame({
    "order_id": [f"ORD-{i}" for i in rng.integers(1000, 99999, n)],
    "age": rng.integers(18, 80, n),
    "income": np.round(rng.lognormal(10.5, 0.5, n), 0),
    "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
    "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
})
applicants["signup"] = applicants["signup"].dt.strftime("%Y-%m-%d")  # as the CSV export has it
applicants.loc[rng.random(n) < 0.05, "income"] = np.nan              # not everyone says
risk = (-0.5 + 0.9 * (applicants["region"] == "south") - 0.00001 * applicants["income"].fillna(36000)
        + 0.02 * (applicants["age"] < 25) * 30 + rng.normal(0, 0.5, n))
defaulted = (risk > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(applicants, defaulted, test_size=0.25,
                                                    random_state=seed, stratify=defaulted)
X_train.head()"""

LOAN_LEARNED = """\
# Learned from the training data; the service gets them as they are here.
train_medians = X_train[["age", "income"]].median()
FEATURES = list(X_train.columns)
default_rate_by_region = y_train.groupby(X_train["region"]).mean().round(3).to_dict()
overall_rate = float(y_train.mean())"""

LOAN_CLASSES = """\
class AgeBands(BaseEstimator, TransformerMixin):
    \"\"\"Age in bands: the risk is not linear in age.\"\"\"

    def __init__(self, edges=(25, 35, 50, 65)):
        self.edges = edges

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.digitize(np.asarray(X, dtype=float), self.edges)


def add_calendar(X: pd.DataFrame) -> pd.DataFrame:
    day = pd.to_datetime(X["signup"])
    return pd.DataFrame({"month": day.dt.month, "weekday": day.dt.day_of_week})"""

LOAN_TRAIN = """\
prepare = ColumnTransformer([
    ("age", make_pipeline(AgeBands(), OneHotEncoder(handle_unknown="ignore")), ["age"]),
    ("calendar", FunctionTransformer(add_calendar), ["signup"]),
    ("income", StandardScaler(), ["income"]),
    ("region", OneHotEncoder(handle_unknown="ignore"), ["region"]),
])
model = make_pipeline(prepare, LogisticRegression(max_iter=1000))
model.fit(X_train.fillna(train_medians), y_train)
scores = {"roc_auc": roc_auc_score(y_test, model.predict_proba(X_test.fillna(train_medians))[:, 1])}
scores"""

LOAN_SERVING = """\
APPROVE_BELOW = 0.5


@n2p.model
def predict(model, X: pd.DataFrame) -> pd.DataFrame:
    p = model.predict_proba(X.fillna(train_medians))[:, 1]
    return pd.DataFrame({"default": p >= APPROVE_BELOW, "probability": p.round(4)})


@n2p.fallback
def regional_rate(X: pd.DataFrame) -> pd.DataFrame:
    \"\"\"No model: the region's default rate in the training data.\"\"\"
    p = X["region"].map(default_rate_by_region).fillna(overall_rate).to_numpy(dtype=float)
    return pd.DataFrame({"default": p >= APPROVE_BELOW, "probability": p})"""

# constants written as tuples, built by calls, a frozen dataclass: used by a check and the model
LOAN_CONSTANTS = """\
MIN_LEN, MAX_LEN = 5, 12                 # an order id's length
ORDER_ID = re.compile(r"ORD-\\d+")
LOW, HIGH = -1.0, 2 ** 20                # constant expressions


@dataclass(frozen=True)
class Thresholds:
    approve_below: float = 0.5
    refer_above: float = 0.8


SETTINGS = Thresholds()


def well_formed(order_id: str) -> bool:
    return MIN_LEN <= len(order_id) <= MAX_LEN and ORDER_ID.fullmatch(order_id) is not None


@n2p.check
def order_id_well_formed(X: pd.DataFrame) -> pd.Series:
    return X["order_id"].map(well_formed)


@n2p.model
def predict(model, X: pd.DataFrame) -> pd.DataFrame:
    p = model.predict_proba(X.fillna(train_medians))[:, 1].clip(LOW, HIGH)
    return pd.DataFrame({"default": p >= SETTINGS.approve_below, "probability": p.round(4)})


@n2p.fallback
def regional_rate(X: pd.DataFrame) -> pd.DataFrame:
    p = X["region"].map(default_rate_by_region).fillna(overall_rate).to_numpy(dtype=float)
    return pd.DataFrame({"default": p >= SETTINGS.approve_below, "probability": p})"""

# the model centres its input by means learned in training and orders columns as trained
LOAN_LEARNED_SERVING = """\
@n2p.model
def predict(model, X: pd.DataFrame) -> pd.DataFrame:
    X = X[FEATURES].fillna(train_medians)
    p = model.predict_proba(X)[:, 1]
    return pd.DataFrame({"default": p >= 0.5, "probability": p.round(4),
                         "income_vs_median": (X["income"] - train_medians["income"]).round(0)})


@n2p.fallback
def regional_rate(X: pd.DataFrame) -> pd.DataFrame:
    \"\"\"No model: the region's default rate in the training data.\"\"\"
    p = X["region"].map(default_rate_by_region).fillna(overall_rate).to_numpy(dtype=float)
    return pd.DataFrame({"default": p >= 0.5, "probability": p,
                         "income_vs_median": (X["income"] - train_medians["income"]).round(0)})"""


def loan(name: str, serving: str = LOAN_SERVING, *, learned: str = LOAN_LEARNED,
         classes: str = LOAN_CLASSES, train: str = LOAN_TRAIN, save_extra: str = "") -> list:
    """The loan notebook with its serving cell (and any other part) swapped."""
    return _cells([
        ("markdown", "# Loan defaults\n\nSynthetic applications (generated below). The "
                     "pipeline holds a transformer class and a calendar function written "
                     "here; the serving code uses what training learned."),
        ("code", LOAN_IMPORTS),
        ("parameters", "n_applicants = 1500\nseed = 5\nmin_roc_auc = 0.6"),
        ("code", LOAN_DATA),
        ("code", learned),
        ("code", classes),
        ("code", train),
        ("markdown", "## Serving code"),
        ("code", serving),
        ("code", f'n2p.save_model("{name}", model, reference=X_train, metrics=scores,\n'
                 f'               gate={{"roc_auc": min_roc_auc}}, examples=X_test.head(8)'
                 f'{save_extra})'),
    ])


SHAPES: dict[str, Callable[[], list]] = {"lightgbm_categorical": lightgbm_categorical}
SHAPES.update({
    "model_class_in_pipeline": lambda: loan("model_class_in_pipeline"),
    "constants_by_call": lambda: loan("constants_by_call", LOAN_CONSTANTS),
    "values_learned_from_data": lambda: loan("values_learned_from_data", LOAN_LEARNED_SERVING),
    # the pipeline's class and function live in loan_features.py, beside the notebook
    "local_helpers": lambda: loan("local_helpers", classes=(
        "# kept in a module beside the notebook, shared with other notebooks\n"
        "from loan_features import AgeBands, add_calendar")),
})

# --- a PyTorch nn.Module written in the notebook (test_e2e_torch.py) ------------------------
# Machine failures as a data scientist writes them: sensor readings generated with numpy,
# a small network class defined in a cell and trained with a plain loop, the input
# standardised by means and deviations learned from the training data (torch tensors,
# captured by value), and the maintenance handbook's thresholds as the fallback.

def torch_module() -> list:
    """A notebook ``nn.Module`` saved as the model, standardised by learned tensors."""
    return _cells([
        ("markdown", "# Machine failures with PyTorch\n\nSynthetic sensor readings "
                     "(generated below). A small network written here predicts whether a "
                     "machine fails within a week; the maintenance handbook's rules answer "
                     "when the network cannot."),
        ("code", """\
import nb2prod as n2p
import numpy as np
import pandas as pd
import torch
from torch import nn
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split"""),
        ("parameters", """\
n_machines = 2000
seed = 7
epochs = 12           # small: the tests build this notebook for real
batch_size = 64
learning_rate = 0.01
hidden = 16
min_roc_auc = 0.75    # evaluation gate"""),
        ("markdown", "## Data\nNot exported: runs at build and retrain time only."),
        ("code", """\
rng = np.random.default_rng(seed)
n = n_machines
readings = pd.DataFrame({
    "temperature_c": np.round(rng.normal(70, 8, n), 1),
    "vibration_mm_s": np.round(rng.gamma(2.0, 1.5, n), 2),
    "pressure_bar": np.round(rng.normal(6.0, 0.6, n), 2),
    "rpm": rng.integers(900, 3600, n),
    "hours_since_service": rng.integers(0, 2000, n),
    "oil_quality": np.round(rng.uniform(0, 1, n), 3),
})
logit = (-4.0 + 0.08 * (readings["temperature_c"] - 70) + 0.6 * readings["vibration_mm_s"]
         + 0.0012 * readings["hours_since_service"] - 2.0 * readings["oil_quality"]
         + 0.6 * np.abs(readings["pressure_bar"] - 6.0) + rng.normal(0, 0.8, n))
failed = (logit > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(readings, failed, test_size=0.25,
                                                    random_state=seed, stratify=failed)
print(f"{failed.mean():.1%} of machines fail")
X_train.describe().round(2)"""),
        ("markdown", "## The input contract"),
        ("code", """\
checks = n2p.expect(X_train)
checks"""),
        ("markdown", "## What training learns besides the weights\nThe network sees "
                     "standardised readings; the service standardises a request with the "
                     "same means and deviations."),
        ("code", """\
FEATURES = list(X_train.columns)
feature_means = torch.tensor(X_train[FEATURES].mean().to_numpy(), dtype=torch.float32)
feature_stds = torch.tensor(X_train[FEATURES].std().to_numpy(), dtype=torch.float32)
# the handbook's alarms, set at the training data's upper tail
vibration_alarm = float(X_train["vibration_mm_s"].quantile(0.95))
temperature_alarm = float(X_train["temperature_c"].quantile(0.9))"""),
        ("markdown", "## Model"),
        ("code", """\
class RiskNet(nn.Module):
    \"\"\"Sensor readings in, the log-odds of a failure within a week out.\"\"\"

    def __init__(self, n_features: int, hidden: int = 16):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


def standardise(X: pd.DataFrame) -> torch.Tensor:
    x = torch.tensor(X[FEATURES].to_numpy(dtype="float32"))
    return (x - feature_means) / feature_stds"""),
        ("code", """\
torch.manual_seed(seed)
torch.set_num_threads(1)  # a network this small trains faster on one thread than on two
net = RiskNet(len(FEATURES), hidden)
optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
loss_fn = nn.BCEWithLogitsLoss()
x_train = standardise(X_train)
t_train = torch.tensor(y_train.to_numpy(), dtype=torch.float32)
for epoch in range(epochs):
    net.train()
    order = torch.randperm(len(x_train))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        optimiser.zero_grad()
        loss = loss_fn(net(x_train[batch]), t_train[batch])
        loss.backward()
        optimiser.step()
    if epoch % 4 == 3:
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")

net.eval()
with torch.no_grad():
    proba = torch.sigmoid(net(standardise(X_test))).numpy()
scores = {"roc_auc": roc_auc_score(y_test, proba), "accuracy": accuracy_score(y_test, proba >= 0.5)}
scores"""),
        ("markdown", "## Serving code\nExported to the service."),
        ("code", """\
FAILURE_AT = 0.5
SERVICE_INTERVAL_H = 1500


@n2p.model
def failure_risk(model, X: pd.DataFrame) -> pd.DataFrame:
    with torch.no_grad():
        p = torch.sigmoid(model(standardise(X))).numpy().astype(float)
    return pd.DataFrame({"failure": p >= FAILURE_AT, "probability": p})


@n2p.fallback
def handbook(X: pd.DataFrame) -> pd.DataFrame:
    \"\"\"The maintenance handbook: shaking hard, or overdue for service and running hot.\"\"\"
    shaking = X["vibration_mm_s"].to_numpy() > vibration_alarm
    overdue = X["hours_since_service"].to_numpy() > SERVICE_INTERVAL_H
    hot = X["temperature_c"].to_numpy() > temperature_alarm
    return pd.DataFrame({"failure": shaking | (overdue & hot), "probability": np.nan})"""),
        ("code", """\
n2p.save_model("torch_module", net.eval(), reference=X_train, metrics=scores,
               gate={"roc_auc": min_roc_auc}, examples=X_test.head(5), checks=checks)"""),
    ])


SHAPES.update({"torch_module": torch_module})


def main(names: list[str] | None = None) -> None:
    """Write ``tests/notebooks/<name>.ipynb`` for each shape named (all by default)."""
    unknown = sorted(set(names or ()) - set(SHAPES))
    if unknown:
        raise SystemExit(f"no shape named {', '.join(unknown)}; shapes: {', '.join(SHAPES)}")
    for name in names or SHAPES:
        write(HERE / f"{name}.ipynb", SHAPES[name]())


if __name__ == "__main__":
    main(sys.argv[1:])
